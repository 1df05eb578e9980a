"""Volume snapshots: a point-in-time, independent copy of a volume's data.

A snapshot is a full copy of the volume made through the libvirt storage API
(``createXMLFrom``) into the same host's pool, not a qcow2 internal or external
snapshot: libvirt's storage API cannot reach internal snapshots, and external ones
(``snapshotCreateXML`` with ``DISK_ONLY``) make the live disk an overlay whose chain
must be block-committed to delete a snapshot. A copy costs its size in storage (it
is charged to the ``storage`` quota) but is independent: deleting one snapshot is
deleting one file, restoring copies it back, and no chain ever grows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from compute.choices import SnapshotPhase
from portal.models import Resource
from tenants.models import DNS_LABEL


class Snapshot(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="snapshots",
        verbose_name=_("tenant"),
    )
    volume = models.ForeignKey(
        "compute.Volume",
        on_delete=models.PROTECT,
        related_name="snapshots",
        help_text=_("The volume it is a copy of (a volume with snapshots is not deleted)."),
        verbose_name=_("volume"),
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
    )
    vm = models.ForeignKey(
        "compute.VirtualMachine",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="snapshots",
        help_text=_(
            "Set when taken as part of a snapshot of this VM: the snapshots of its "
            "disks with the same name were taken together and restore together."
        ),
        verbose_name=_("VM"),
    )
    phase = models.CharField(
        max_length=12,
        choices=SnapshotPhase.choices,
        default=SnapshotPhase.PENDING,
        verbose_name=_("phase"),
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
        verbose_name=_("message"),
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("phase changed"),
    )
    size_gib = models.PositiveIntegerField(
        help_text=_("The volume's size when taken; charged to the storage quota."),
        verbose_name=_("size (GiB)"),
    )
    host = models.ForeignKey(
        "compute.Host",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="snapshots",
        verbose_name=_("host"),
    )
    pool = models.CharField(
        max_length=100,
        blank=True,
        verbose_name=_("pool"),
    )
    backend_name = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("The copy's name in the pool."),
        verbose_name=_("backend name"),
    )
    live = models.BooleanField(
        default=False,
        help_text=_(
            "Taken while its VM ran: its disks were copied as they were at one moment "
            "(and its memory saved then, when memory_name is set)."
        ),
        verbose_name=_("taken live"),
    )
    quiesced = models.BooleanField(
        default=False,
        help_text=_(
            "The guest agent froze the guest's filesystems for the copy; otherwise the "
            "copy is crash-consistent."
        ),
        verbose_name=_("quiesced"),
    )
    memory_name = models.CharField(
        max_length=255,
        blank=True,
        help_text=_(
            "The file in the pool holding the VM's memory state (one disk's snapshot of a "
            "VM snapshot taken with memory carries it)."
        ),
        verbose_name=_("memory state file"),
    )
    boot_log_offset = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text=_(
            "With memory state: where the console log of the boot it caught began (its "
            "readiness is read from there when the VM resumes from it)."
        ),
        verbose_name=_("boot log offset"),
    )
    memory_gib = models.PositiveIntegerField(
        default=0,
        help_text=_("The memory state's size, charged to the storage quota with the copy."),
        verbose_name=_("memory (GiB)"),
    )
    restored = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When it was last restored onto its volume."),
        verbose_name=_("restored"),
    )
    schedule = models.ForeignKey(
        "compute.SnapshotSchedule",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="snapshots",
        help_text=_("The schedule that took it (its retention applies); none when by hand."),
        verbose_name=_("schedule"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("snapshot")
        verbose_name_plural = _("snapshots")
        ordering = ["volume", "-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["volume", "name"],
                name="%(app_label)s_%(class)s_unique_name_volume",
                violation_error_message="The volume has a snapshot with this name.",
            ),
        ]
        indexes = [models.Index(fields=["phase"], name="compute_snapshot_phase")]

    def __str__(self) -> str:
        return f"{self.volume}@{self.name}"

    @property
    def quota_ref(self) -> str:
        return f"snapshot:{self.uid}"


class SnapshotSchedule(Resource):
    """Snapshots taken by Celery beat: of one volume, or of all a VM's disks together,
    every ``interval_hours`` or daily at ``daily_at`` (UTC), keeping the newest ``keep``
    of those this schedule took (older ones are deleted; snapshots taken by hand never
    are). A run that fails is a Warning event and waits for the next period."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="snapshot_schedules",
        verbose_name=_("tenant"),
    )
    volume = models.OneToOneField(
        "compute.Volume",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="snapshot_schedule",
        verbose_name=_("volume"),
    )
    vm = models.OneToOneField(
        "compute.VirtualMachine",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="snapshot_schedule",
        verbose_name=_("VM"),
    )
    interval_hours = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text=_("Take one every this many hours (or daily_at)."),
        verbose_name=_("interval (hours)"),
    )
    daily_at = models.TimeField(
        null=True,
        blank=True,
        help_text=_("Take one every day at this time, UTC (or interval_hours)."),
        verbose_name=_("daily at"),
    )
    keep = models.PositiveSmallIntegerField(
        help_text=_("How many of this schedule's snapshots to keep; older ones are deleted."),
        verbose_name=_("keep"),
    )
    enabled = models.BooleanField(
        default=True,
        verbose_name=_("enabled"),
    )
    next_run = models.DateTimeField(
        db_index=True,
        verbose_name=_("next run"),
    )
    last_run = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("last run"),
    )
    last_result = models.CharField(
        max_length=12,
        blank=True,
        help_text=_("Succeeded or Failed (the last run), empty before the first."),
        verbose_name=_("last result"),
    )
    last_message = models.CharField(
        max_length=1000,
        blank=True,
        verbose_name=_("last message"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("snapshot schedule")
        verbose_name_plural = _("snapshot schedules")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(volume__isnull=False, vm__isnull=True)
                | models.Q(volume__isnull=True, vm__isnull=False),
                name="%(app_label)s_%(class)s_volume_or_vm",
                violation_error_message="A schedule is of one volume or of one VM.",
            ),
            models.CheckConstraint(
                condition=models.Q(interval_hours__isnull=False, daily_at__isnull=True)
                | models.Q(interval_hours__isnull=True, daily_at__isnull=False),
                name="%(app_label)s_%(class)s_interval_or_daily",
                violation_error_message="A schedule runs every N hours or daily at a time.",
            ),
            models.CheckConstraint(
                condition=models.Q(keep__gte=1),
                name="%(app_label)s_%(class)s_keep_positive",
                violation_error_message="Keep at least one snapshot.",
            ),
        ]

    def __str__(self) -> str:
        return f"schedule of {self.volume or self.vm}"
