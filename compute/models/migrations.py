"""Live migrations of VMs between hosts, the policy that bounds them, and host drains."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from compute.choices import MigrationPhase
from portal.models import Resource


class MigrationPolicy(models.Model):
    """Limits and tuning of live migrations.

    The row without a host is the cluster default (there is exactly one); a row with a
    host overrides the tuning for migrations *leaving* that host. ``max_parallel`` is
    read from the cluster row only, ``max_outbound`` from the source host's row.
    """

    host = models.OneToOneField(
        "compute.Host",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="migration_policy",
        help_text=_("Empty: the cluster defaults. Set: overrides for migrations leaving it."),
        verbose_name=_("host"),
    )
    bandwidth_mib = models.PositiveIntegerField(
        default=0,
        help_text=_("Bandwidth cap in MiB/s; 0 = unlimited."),
        verbose_name=_("bandwidth (MiB/s)"),
    )
    completion_timeout_per_gib = models.PositiveIntegerField(
        default=150,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Abort when the migration takes longer than this many seconds per GiB "
            "of guest memory (and disk)."
        ),
        verbose_name=_("completion timeout per GiB"),
    )
    progress_timeout = models.PositiveIntegerField(
        default=150,
        validators=[MinValueValidator(1)],
        help_text=_("Abort when the remaining data has not shrunk for this many seconds."),
        verbose_name=_("progress timeout"),
    )
    max_downtime_ms = models.PositiveIntegerField(
        default=500,
        validators=[MinValueValidator(1)],
        help_text=_("Longest pause of the guest allowed when switching over."),
        verbose_name=_("maximum downtime (ms)"),
    )
    auto_converge = models.BooleanField(
        default=False,
        help_text=_("Throttle the guest's vCPUs when memory is dirtied faster than sent."),
        verbose_name=_("auto-converge"),
    )
    post_copy = models.BooleanField(
        default=False,
        help_text=_("Switch to post-copy when pre-copy does not converge (third iteration)."),
        verbose_name=_("post-copy"),
    )
    max_parallel = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("Migrations running at once in the cluster (cluster row only)."),
        verbose_name=_("maximum parallel"),
    )
    max_outbound = models.PositiveIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text=_("Migrations leaving one host at once."),
        verbose_name=_("maximum outbound"),
    )

    class Meta:
        verbose_name = _("migration policy")
        verbose_name_plural = _("migration policies")
        constraints = [
            models.UniqueConstraint(
                Coalesce("host", 0),
                name="%(app_label)s_%(class)s_one_per_scope",
                violation_error_message="There is one cluster policy and one per host.",
            ),
        ]

    def __str__(self) -> str:
        return f"Migration policy of {self.host.name}" if self.host_id else "Cluster defaults"


class HostDrain(models.Model):
    """A request to empty a host: maintenance on, every VM migrated away."""

    host = models.ForeignKey(
        "compute.Host",
        on_delete=models.CASCADE,
        related_name="drains",
        verbose_name=_("host"),
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )
    unmovable = models.JSONField(
        default=list,
        blank=True,
        help_text=_('VMs left behind: [{"tenant", "vm", "reason"}].'),
        verbose_name=_("unmovable"),
    )

    class Meta:
        verbose_name = _("host drain")
        verbose_name_plural = _("host drains")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Drain of {self.host.name} at {self.created:%Y-%m-%d %H:%M}"


class Migration(Resource):
    """One live migration of a VM, with the last progress sample of its job."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        related_name="migrations",
        verbose_name=_("tenant"),
    )
    vm = models.ForeignKey(
        "compute.VirtualMachine",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="migrations",
        verbose_name=_("VM"),
    )
    vm_name = models.CharField(
        max_length=63,
        help_text=_("Kept when the VM is deleted later."),
        verbose_name=_("VM name"),
    )
    source = models.ForeignKey(
        "compute.Host",
        on_delete=models.PROTECT,
        related_name="outbound_migrations",
        verbose_name=_("source host"),
        db_index=False,
    )
    target = models.ForeignKey(
        "compute.Host",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="inbound_migrations",
        verbose_name=_("target host"),
    )
    target_pinned = models.BooleanField(
        default=False,
        help_text=_("Staff chose the target; otherwise the scheduler does."),
        verbose_name=_("target pinned"),
    )
    drain = models.ForeignKey(
        HostDrain,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="migrations",
        verbose_name=_("drain"),
    )
    phase = models.CharField(
        max_length=12,
        choices=MigrationPhase.choices,
        default=MigrationPhase.PENDING,
        verbose_name=_("phase"),
    )
    reason = models.CharField(
        max_length=500,
        blank=True,
        help_text=_("Why it waits, failed or was cancelled."),
        verbose_name=_("reason"),
    )
    detail = models.TextField(
        blank=True,
        editable=False,
        help_text=_("Platform staff only: the hypervisor's own words behind a failure."),
        verbose_name=_("detail"),
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    request_note = models.CharField(
        max_length=200,
        blank=True,
        help_text=_("Why the requester wanted it."),
        verbose_name=_("request note"),
    )
    cancel_requested = models.BooleanField(
        default=False,
        verbose_name=_("cancel requested"),
    )
    started = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("started"),
    )
    finished = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("finished"),
    )
    memory_processed = models.PositiveBigIntegerField(
        default=0,
        verbose_name=_("memory processed"),
    )
    memory_remaining = models.PositiveBigIntegerField(
        default=0,
        verbose_name=_("memory remaining"),
    )
    memory_total = models.PositiveBigIntegerField(
        default=0,
        verbose_name=_("memory total"),
    )
    disk_processed = models.PositiveBigIntegerField(
        default=0,
        verbose_name=_("disk processed"),
    )
    disk_remaining = models.PositiveBigIntegerField(
        default=0,
        verbose_name=_("disk remaining"),
    )
    disk_total = models.PositiveBigIntegerField(
        default=0,
        verbose_name=_("disk total"),
    )
    transfer_rate = models.PositiveBigIntegerField(
        default=0,
        help_text=_("Bytes per second."),
        verbose_name=_("transfer rate"),
    )
    dirty_rate = models.PositiveBigIntegerField(
        default=0,
        help_text=_("Bytes of guest memory dirtied per second."),
        verbose_name=_("dirty rate"),
    )
    iteration = models.PositiveIntegerField(
        default=0,
        verbose_name=_("iteration"),
    )
    eta_seconds = models.FloatField(
        null=True,
        blank=True,
        verbose_name=_("ETA (seconds)"),
    )
    downtime_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        verbose_name=_("downtime (ms)"),
    )
    samples = models.PositiveIntegerField(
        default=0,
        help_text=_("How many progress samples were taken."),
        verbose_name=_("samples"),
    )

    class Meta:
        verbose_name = _("migration")
        verbose_name_plural = _("migrations")
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["vm"],
                condition=Q(phase__in=["Pending", "Scheduling", "Running"]),
                name="%(app_label)s_%(class)s_one_active_per_vm",
                violation_error_message="This VM has a migration in progress already.",
            ),
        ]
        indexes = [
            models.Index(fields=["source", "phase"]),
            models.Index(fields=["phase"], name="compute_migration_phase"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.vm_name} migration {self.uid}"

    @property
    def percent(self) -> float:
        """Share of memory (and disk) sent, for progress bars."""
        total = self.memory_total + self.disk_total
        if self.phase == MigrationPhase.SUCCEEDED:
            return 100.0
        if not total:
            return 0.0
        done = total - min(total, self.memory_remaining + self.disk_remaining)
        return round(100.0 * done / total, 1)

    @property
    def active(self) -> bool:
        return self.phase in {
            MigrationPhase.PENDING,
            MigrationPhase.SCHEDULING,
            MigrationPhase.RUNNING,
        }
