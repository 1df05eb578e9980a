"""Hypervisor hosts the scheduler places VMs on."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from compute.choices import VirtType


class Host(models.Model):
    """One libvirt host. Capacity is read from the host; ratios allow overcommit."""

    name = models.SlugField(
        max_length=63,
        unique=True,
    )
    uri = models.CharField(
        max_length=255,
        unique=True,
        help_text="libvirt URI, e.g. qemu:///system, qemu+tcp://10.0.0.2/system or "
        "test:///default.",
    )
    virt_type = models.CharField(
        max_length=8,
        choices=VirtType.choices,
        default=VirtType.AUTO,
    )
    cpus = models.PositiveIntegerField(
        default=0,
        help_text="Physical CPUs, read from the host by 'check now'.",
    )
    memory_mib = models.PositiveBigIntegerField(
        default=0,
        help_text="Memory in MiB, read from the host.",
    )
    cpu_ratio = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("4.00"),
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text="vCPU overcommit: schedulable vCPUs = cpus × ratio.",
    )
    memory_ratio = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text="Memory overcommit: schedulable MiB = memory × ratio.",
    )
    enabled = models.BooleanField(
        default=True,
    )
    maintenance = models.BooleanField(
        default=False,
        help_text="No new VMs are placed here; drain moves the running ones away.",
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        help_text='Key/value labels for placement, e.g. {"zone": "a", "ssd": "true"}.',
    )
    reachable = models.BooleanField(
        default=False,
    )
    last_seen = models.DateTimeField(
        null=True,
        blank=True,
    )
    message = models.CharField(
        max_length=500,
        blank=True,
        help_text="Why the host is unreachable, when it is.",
    )
    capabilities = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="What the backend can do here (live_migration, console, metrics).",
    )
    storage_path = models.CharField(
        max_length=500,
        blank=True,
        help_text="Directory of this host's volume pool (a libvirt dir pool); empty: "
        "ISOTOPE_STORAGE_ROOT/<host name>.",
    )
    storage_gib = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text="Capacity of the volume pool in GiB, read by 'check now'.",
    )
    effective_virt_type = models.CharField(
        max_length=8,
        blank=True,
        editable=False,
        help_text="Domain type used for guests: kvm, qemu, or test.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def vcpu_capacity(self) -> Decimal:
        return Decimal(self.cpus) * self.cpu_ratio

    @property
    def memory_capacity(self) -> Decimal:
        return Decimal(self.memory_mib) * self.memory_ratio

    @property
    def volume_path(self) -> str:
        """Where this host's volume pool lives (on the host's own filesystem)."""
        from django.conf import settings

        return self.storage_path or f"{settings.ISOTOPE_STORAGE_ROOT.rstrip('/')}/{self.name}"

    def can(self, capability: str) -> bool:
        return bool(self.capabilities.get(capability))
