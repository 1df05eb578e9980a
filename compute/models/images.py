"""Guest images and named sizes."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

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
        verbose_name=_("name"),
        db_index=False,
    )
    display_name = models.CharField(
        max_length=100,
        blank=True,
        verbose_name=_("display name"),
    )
    kind = models.CharField(
        max_length=8,
        choices=ImageKind.choices,
        verbose_name=_("kind"),
    )
    kernel_path = models.CharField(
        max_length=500,
        blank=True,
        verbose_name=_("kernel path"),
    )
    initrd_path = models.CharField(
        max_length=500,
        blank=True,
        verbose_name=_("initrd path"),
    )
    cmdline = models.CharField(
        max_length=500,
        blank=True,
        default="console=ttyS0 console=tty0",
        help_text=_("Kernel command line; isotope.hostname=<vm name> is appended."),
        verbose_name=_("kernel command line"),
    )
    disk_path = models.CharField(
        max_length=500,
        blank=True,
        help_text=_("Base image for copy-on-write disks (qcow2 or raw)."),
        verbose_name=_("disk path"),
    )
    disk_format = models.CharField(
        max_length=8,
        default="qcow2",
        blank=True,
        verbose_name=_("disk format"),
    )
    ready_banner = models.CharField(
        max_length=100,
        blank=True,
        help_text=_(
            "Text the guest prints on its serial console once it has booted: its VMs "
            "turn Ready when it appears. Empty: Ready follows Running, unless a QEMU guest "
            "agent channel is present (then the agent must answer a ping)."
        ),
        verbose_name=_("ready banner"),
    )
    min_memory_mib = models.PositiveIntegerField(
        default=128,
        verbose_name=_("minimum memory (MiB)"),
    )
    os_label = models.CharField(
        max_length=100,
        blank=True,
        verbose_name=_("OS label"),
    )
    public = models.BooleanField(
        default=True,
        verbose_name=_("public"),
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="images",
        help_text=_("Owner of a private image; empty for public images."),
        verbose_name=_("tenant"),
    )
    phase = models.CharField(
        max_length=16,
        choices=ImagePhase.choices,
        default=ImagePhase.READY,
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
    source = models.CharField(
        max_length=8,
        choices=ImageSource.choices,
        default=ImageSource.PLATFORM,
        blank=True,
        verbose_name=_("source"),
    )
    source_url = models.CharField(
        max_length=2000,
        blank=True,
        verbose_name=_("source URL"),
    )
    expected_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("The checksum the importer gave; the file must match it."),
        verbose_name=_("expected SHA-256"),
    )
    sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("Checksum of the file as received (before conversion)."),
        verbose_name=_("SHA-256"),
    )
    declared_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("Size announced by the uploader (Upload-Length) or the importer."),
        verbose_name=_("declared bytes"),
    )
    upload_offset = models.BigIntegerField(
        default=0,
        verbose_name=_("upload offset"),
    )
    progress_bytes = models.BigIntegerField(
        default=0,
        verbose_name=_("progress bytes"),
    )
    progress_total = models.BigIntegerField(
        null=True,
        blank=True,
        verbose_name=_("progress total"),
    )
    source_format = models.CharField(
        max_length=16,
        blank=True,
        help_text=_("Format detected by qemu-img (qcow2 or raw)."),
        verbose_name=_("source format"),
    )
    size_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("Size of the stored qcow2 file."),
        verbose_name=_("size (bytes)"),
    )
    virtual_size_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("The disk size a guest sees."),
        verbose_name=_("virtual size (bytes)"),
    )
    attempts = models.PositiveSmallIntegerField(
        default=0,
        verbose_name=_("attempts"),
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
        verbose_name = _("image")
        verbose_name_plural = _("images")
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
        indexes = [models.Index(fields=["phase"], name="compute_image_phase")]

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
        if self.kind == ImageKind.DISK and not self.disk_path and not self.imported:
            # A tenant's image gets its file from its import (none while it imports).
            raise ValidationError("A disk image needs a base disk path.")
        if not self.public and self.tenant_id is None:
            raise ValidationError("A private image belongs to a tenant.")


class Flavor(models.Model):
    """A named VM size offered on the create form."""

    name = models.SlugField(
        max_length=40,
        unique=True,
        verbose_name=_("name"),
    )
    vcpus = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        verbose_name=_("vCPUs"),
    )
    memory_mib = models.PositiveIntegerField(
        validators=[MinValueValidator(64)],
        verbose_name=_("memory (MiB)"),
    )
    disk_gib = models.PositiveIntegerField(
        default=0,
        verbose_name=_("disk (GiB)"),
    )

    class Meta:
        verbose_name = _("flavor")
        verbose_name_plural = _("flavors")
        ordering = ["vcpus", "memory_mib", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.vcpus} vCPU, {self.memory_mib} MiB, {self.disk_gib} GiB)"
