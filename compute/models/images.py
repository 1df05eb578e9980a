"""Guest images and named sizes."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from compute.choices import ImageKind, ImagePhase, ImageSource
from portal.models import Resource


class Image(Resource):
    """A bootable guest: a kernel + initrd pair, or a disk base image to overlay.

    Platform images are registered by staff and are ``Ready`` from the start. Tenants
    import their own (``source`` upload or url): the row is created ``Uploading`` or
    ``Pending`` with its storage charged, a Celery task fetches, verifies and converts
    the file to qcow2 and the image turns ``Ready`` (``disk_path`` set) or ``Failed``
    (``message`` says why, nothing else is kept).
    """

    name = models.SlugField(
        max_length=63,
    )
    display_name = models.CharField(
        max_length=100,
        blank=True,
    )
    kind = models.CharField(
        max_length=8,
        choices=ImageKind.choices,
    )
    kernel_path = models.CharField(
        max_length=500,
        blank=True,
    )
    initrd_path = models.CharField(
        max_length=500,
        blank=True,
    )
    cmdline = models.CharField(
        max_length=500,
        blank=True,
        default="console=ttyS0 console=tty0",
        help_text="Kernel command line; isotope.hostname=<vm name> is appended.",
    )
    disk_path = models.CharField(
        max_length=500,
        blank=True,
        help_text="Base image for copy-on-write disks (qcow2 or raw).",
    )
    disk_format = models.CharField(
        max_length=8,
        default="qcow2",
        blank=True,
    )
    ready_banner = models.CharField(
        max_length=100,
        blank=True,
        help_text="Text the guest prints on its serial console once it has booted: its VMs "
        "turn Ready when it appears. Empty: Ready follows Running, unless a QEMU guest "
        "agent channel is present (then the agent must answer a ping).",
    )
    min_memory_mib = models.PositiveIntegerField(
        default=128,
    )
    os_label = models.CharField(
        max_length=100,
        blank=True,
    )
    public = models.BooleanField(
        default=True,
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="images",
        help_text="Owner of a private image; empty for public images.",
    )
    phase = models.CharField(
        max_length=16,
        choices=ImagePhase.choices,
        default=ImagePhase.READY,
        db_index=True,
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
    )
    source = models.CharField(
        max_length=8,
        choices=ImageSource.choices,
        default=ImageSource.PLATFORM,
        blank=True,
    )
    source_url = models.CharField(
        max_length=2000,
        blank=True,
    )
    expected_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="The checksum the importer gave; the file must match it.",
    )
    sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="Checksum of the file as received (before conversion).",
    )
    declared_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Size announced by the uploader (Upload-Length) or the importer.",
    )
    upload_offset = models.BigIntegerField(
        default=0,
    )
    progress_bytes = models.BigIntegerField(
        default=0,
    )
    progress_total = models.BigIntegerField(
        null=True,
        blank=True,
    )
    source_format = models.CharField(
        max_length=16,
        blank=True,
        help_text="Format detected by qemu-img (qcow2 or raw).",
    )
    size_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Size of the stored qcow2 file.",
    )
    virtual_size_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The disk size a guest sees.",
    )
    attempts = models.PositiveSmallIntegerField(
        default=0,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(tenant__isnull=True),
                name="%(app_label)s_%(class)s_unique_public_name",
                violation_error_message="A public image with this name exists.",
            ),
            models.UniqueConstraint(
                fields=["name", "tenant"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="This tenant has an image with this name.",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.name

    @property
    def quota_ref(self) -> str:
        return f"image:{self.uid}"

    @property
    def imported(self) -> bool:
        """A tenant's own image (uploaded or imported), as opposed to a platform one."""
        return bool(self.source)

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.kind == ImageKind.KERNEL and not (self.kernel_path and self.initrd_path):
            raise ValidationError("A kernel image needs a kernel and an initrd path.")
        if self.kind == ImageKind.DISK and not self.disk_path:
            raise ValidationError("A disk image needs a base disk path.")
        if not self.public and self.tenant_id is None:
            raise ValidationError("A private image belongs to a tenant.")


class Flavor(models.Model):
    """A named VM size offered on the create form."""

    name = models.SlugField(
        max_length=40,
        unique=True,
    )
    vcpus = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(64)],
    )
    memory_mib = models.PositiveIntegerField(
        validators=[MinValueValidator(64)],
    )
    disk_gib = models.PositiveIntegerField(
        default=0,
    )

    class Meta:
        ordering = ["vcpus", "memory_mib", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.vcpus} vCPU, {self.memory_mib} MiB, {self.disk_gib} GiB)"
