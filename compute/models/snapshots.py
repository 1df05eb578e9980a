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

from compute.choices import SnapshotPhase
from portal.models import Resource
from tenants.models import DNS_LABEL


class Snapshot(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="snapshots",
    )
    volume = models.ForeignKey(
        "compute.Volume",
        on_delete=models.PROTECT,
        related_name="snapshots",
        help_text="The volume it is a copy of (a volume with snapshots is not deleted).",
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
        related_name="snapshots",
        help_text="Set when taken as part of a snapshot of this VM: the snapshots of its "
        "disks with the same name were taken together and restore together.",
    )
    phase = models.CharField(
        max_length=12,
        choices=SnapshotPhase.choices,
        default=SnapshotPhase.PENDING,
        db_index=True,
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
    )
    size_gib = models.PositiveIntegerField(
        help_text="The volume's size when taken; charged to the storage quota.",
    )
    host = models.ForeignKey(
        "compute.Host",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="snapshots",
    )
    pool = models.CharField(
        max_length=100,
        blank=True,
    )
    backend_name = models.CharField(
        max_length=255,
        blank=True,
        help_text="The copy's name in the pool.",
    )
    restored = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it was last restored onto its volume.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["volume", "-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["volume", "name"],
                name="%(app_label)s_%(class)s_unique_name_volume",
                violation_error_message="The volume has a snapshot with this name.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.volume}@{self.name}"

    @property
    def quota_ref(self) -> str:
        return f"snapshot:{self.uid}"
