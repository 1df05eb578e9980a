"""Backups: a VM snapshot exported off the host's pool into the backup directory.

A backup holds one standalone qcow2 file per disk of the VM snapshot it was made from
(no backing chain: each snapshot is already a full copy), under
``ISOTOPE_BACKUP_DIR/<tenant>/<backup uid>/<device>.qcow2``, with the sha256 of each
file taken while it was written. It outlives the snapshot, the VM and the host it came
from, and is restored into a *new* VM (never over an existing one).

Backups are not charged to the ``storage`` quota: that quota counts what lives in the
hosts' pools; backup files live in the backup directory, outside them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from compute.choices import BackupPhase
from portal.models import Resource
from tenants.models import DNS_LABEL


class Backup(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="backups",
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
    )
    vm = models.ForeignKey(
        "compute.VirtualMachine",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="backups",
        help_text=_("The VM whose snapshot it exports (kept as vm_name when the VM is gone)."),
    )
    vm_name = models.CharField(
        max_length=63,
    )
    snapshot_name = models.CharField(
        max_length=63,
        help_text=_("The VM snapshot it was exported from."),
    )
    snapshots = models.ManyToManyField(
        "compute.Snapshot",
        blank=True,
        related_name="backups",
        help_text=_("The disk snapshots it reads while exporting (not deleted meanwhile)."),
    )
    vm_spec = models.JSONField(
        default=dict,
        help_text=_(
            "The VM's image, vCPUs, memory and restart policy when backed up: "
            "what a restore creates."
        ),
    )
    disks = models.JSONField(
        default=list,
        help_text=_("One entry per exported disk: device, volume, sizeGiB, file, bytes, sha256."),
    )
    phase = models.CharField(
        max_length=12,
        choices=BackupPhase.choices,
        default=BackupPhase.PENDING,
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
    )
    progress = models.PositiveSmallIntegerField(
        default=0,
        help_text=_("Percent of the bytes exported."),
    )
    size_bytes = models.PositiveBigIntegerField(
        default=0,
        help_text=_("Total size of the exported files."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["tenant", "-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="A backup with this name exists in the tenant.",
            ),
            models.CheckConstraint(
                condition=models.Q(progress__lte=100),
                name="%(app_label)s_%(class)s_progress_percent",
                violation_error_message="Progress is a percentage.",
            ),
        ]
        indexes = [models.Index(fields=["phase"], name="compute_backup_phase")]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"
