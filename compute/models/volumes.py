"""Volumes: a tenant's block storage for VMs (a host's libvirt pool) and pods (a PVC).

A volume has a desired spec (size, attachment to a VM at a device) and an observed
status (phase, the capacity the backend reports, the domain and device it really is
attached to). Where it lives (host, pool, the file name in the pool, the cluster) is
platform detail: the API shows it to staff only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from compute.choices import StorageClass, VolumeFormat, VolumePhase, VolumeSource
from portal.models import Resource
from tenants.models import DNS_LABEL


class Volume(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="volumes",
        verbose_name=_("tenant"),
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
    )
    size_gib = models.PositiveIntegerField(
        help_text=_("Desired size in GiB; volumes only grow."),
        verbose_name=_("size (GiB)"),
    )
    storage_class = models.CharField(
        max_length=12,
        choices=StorageClass.choices,
        default=StorageClass.LOCAL,
        verbose_name=_("storage class"),
    )
    format = models.CharField(
        max_length=12,
        choices=VolumeFormat.choices,
        default=VolumeFormat.QCOW2,
        verbose_name=_("format"),
    )
    phase = models.CharField(
        max_length=12,
        choices=VolumePhase.choices,
        default=VolumePhase.PENDING,
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
    created_from = models.CharField(
        max_length=10,
        choices=VolumeSource.choices,
        default=VolumeSource.BLANK,
        verbose_name=_("created from"),
    )
    source_image = models.ForeignKey(
        "compute.Image",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("source image"),
    )
    source_volume = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="clones",
        verbose_name=_("source volume"),
    )
    source_snapshot = models.ForeignKey(
        "compute.Snapshot",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="copies",
        help_text=_("The snapshot it is a copy of (a VM cloned from a snapshot)."),
    )
    source_backup = models.ForeignKey(
        "compute.Backup",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="restored_volumes",
        help_text=_("The backup its data is restored from (its file for this device)."),
    )
    source_name = models.CharField(
        max_length=200,
        blank=True,
        help_text=_("What it was created from, kept when the source is gone."),
        verbose_name=_("source name"),
    )
    vm = models.ForeignKey(
        "compute.VirtualMachine",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="volumes",
        help_text=_("The VM it is (to be) attached to."),
        verbose_name=_("VM"),
    )
    device = models.CharField(
        max_length=8,
        blank=True,
        help_text=_("Its disk on that VM: vda is the root disk, vdb… data disks."),
        verbose_name=_("device"),
    )
    delete_with_vm = models.BooleanField(
        default=False,
        help_text=_("A root disk made with its VM goes when the VM is deleted."),
        verbose_name=_("delete with VM"),
    )
    host = models.ForeignKey(
        "compute.Host",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="volumes",
        help_text=_("The host whose pool holds a local volume."),
        verbose_name=_("host"),
        db_index=False,
    )
    pool = models.CharField(
        max_length=100,
        blank=True,
        help_text=_("libvirt storage pool on that host."),
        verbose_name=_("pool"),
    )
    backend_name = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("The volume's name in the pool (or the PVC's name)."),
        verbose_name=_("backend name"),
    )
    cluster = models.ForeignKey(
        "compute.KubernetesCluster",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="volumes",
        verbose_name=_("cluster"),
    )
    capacity_gib = models.PositiveIntegerField(
        default=0,
        help_text=_("Size the backend reports (observed)."),
        verbose_name=_("capacity (GiB)"),
    )
    attached_domain = models.CharField(
        max_length=130,
        blank=True,
        help_text=_("Domain the backend has it attached to (observed)."),
        verbose_name=_("attached domain"),
    )
    attached_device = models.CharField(
        max_length=8,
        blank=True,
        verbose_name=_("attached device"),
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("labels"),
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
        verbose_name = _("volume")
        verbose_name_plural = _("volumes")
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="A volume with this name exists in the tenant.",
            ),
            models.UniqueConstraint(
                fields=["vm", "device"],
                condition=Q(vm__isnull=False),
                name="%(app_label)s_%(class)s_one_per_device",
                violation_error_message="That device of the VM holds another volume.",
            ),
            models.CheckConstraint(
                condition=Q(size_gib__gte=1),
                name="%(app_label)s_%(class)s_minimum_size",
                violation_error_message="A volume holds at least 1 GiB.",
            ),
        ]
        indexes = [
            models.Index(fields=["host", "phase"]),
            models.Index(fields=["phase"], name="compute_volume_phase"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def quota_ref(self) -> str:
        return f"volume:{self.uid}"

    @property
    def serial(self) -> str:
        """The disk serial the guest sees (``/sys/block/vdX/serial``): virtio allows 20."""
        return self.uid.hex[:20]

    @property
    def is_root(self) -> bool:
        return self.device == "vda"

    @property
    def local(self) -> bool:
        return self.storage_class == StorageClass.LOCAL
