"""Hypervisor hosts the scheduler places VMs on."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from compute.choices import VirtType

# VNC display :0 is port 5900; QEMU cannot be given a port below it.
VNC_PORT_FLOOR = 5900
VNC_PORT_CEILING = 65535
# The block a host gets by default, and the step between hosts on one machine.
VNC_PORT_BLOCK = 500
# The counters of what is placed on a host, which only the database writes.
PLACED_FIELDS = frozenset({"placed_vcpus", "placed_memory_mib", "placed_vms"})
_LOCAL_ADDRESSES = {"", "localhost", "127.0.0.1", "::1", "localhost.localdomain"}


def machine_of(uri: str) -> str:
    """Which machine a libvirt URI's guests listen on: hosts whose libvirt runs on one
    machine (e.g. node1 and node2 of the local infrastructure, both on the loopback)
    share its TCP ports. ``""`` for libvirt's test driver, which opens no ports."""
    if uri.startswith("test:"):
        return ""
    address = (urlsplit(uri).hostname or "").lower()
    return "local" if address in _LOCAL_ADDRESSES else address


class Host(models.Model):
    """One libvirt host. Capacity is read from the host; ratios allow overcommit."""

    name = models.SlugField(
        max_length=63,
        unique=True,
        verbose_name=_("name"),
    )
    uri = models.CharField(
        max_length=255,
        unique=True,
        help_text=_(
            "libvirt URI, e.g. qemu:///system, qemu+tcp://10.0.0.2/system or test:///default."
        ),
        verbose_name=_("URI"),
    )
    virt_type = models.CharField(
        max_length=8,
        choices=VirtType.choices,
        default=VirtType.AUTO,
        verbose_name=_("virtualisation type"),
    )
    cpus = models.PositiveIntegerField(
        default=0,
        help_text=_("Physical CPUs, read from the host by 'check now'."),
        verbose_name=_("CPUs"),
    )
    memory_mib = models.PositiveBigIntegerField(
        default=0,
        help_text=_("Memory in MiB, read from the host."),
        verbose_name=_("memory (MiB)"),
    )
    cpu_ratio = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("4.00"),
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text=_("vCPU overcommit: schedulable vCPUs = cpus × ratio."),
        verbose_name=_("CPU ratio"),
    )
    memory_ratio = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("0.1"))],
        help_text=_("Memory overcommit: schedulable MiB = memory × ratio."),
        verbose_name=_("memory ratio"),
    )
    enabled = models.BooleanField(
        default=True,
        verbose_name=_("enabled"),
    )
    maintenance = models.BooleanField(
        default=False,
        help_text=_("No new VMs are placed here; drain moves the running ones away."),
        verbose_name=_("maintenance"),
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        help_text=_('Key/value labels for placement, e.g. {"zone": "a", "ssd": "true"}.'),
        verbose_name=_("labels"),
    )
    reachable = models.BooleanField(
        default=False,
        verbose_name=_("reachable"),
    )
    last_seen = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("last seen"),
    )
    message = models.CharField(
        max_length=500,
        blank=True,
        help_text=_("Why the host is unreachable, when it is."),
        verbose_name=_("message"),
    )
    capabilities = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text=_("What the backend can do here (live_migration, console, metrics)."),
        verbose_name=_("capabilities"),
    )
    storage_path = models.CharField(
        max_length=500,
        blank=True,
        help_text=_(
            "Directory of this host's volume pool (a libvirt dir pool); empty: "
            "ISOTOPE_STORAGE_ROOT/<host name>."
        ),
        verbose_name=_("storage path"),
    )
    storage_gib = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text=_("Capacity of the volume pool in GiB, read by 'check now'."),
        verbose_name=_("storage (GiB)"),
    )
    effective_virt_type = models.CharField(
        max_length=8,
        blank=True,
        editable=False,
        help_text=_("Domain type used for guests: kvm, qemu, or test."),
        verbose_name=_("effective virtualisation type"),
    )
    vnc_port_min = models.PositiveIntegerField(
        default=VNC_PORT_FLOOR,
        validators=[MinValueValidator(VNC_PORT_FLOOR), MaxValueValidator(VNC_PORT_CEILING)],
        help_text=_(
            "Guests on this host get their VNC console port from this range. Hosts "
            "on one machine (the same libvirt address) need ranges that do not overlap."
        ),
        verbose_name=_("first console port"),
    )
    tunnel_address = models.GenericIPAddressField(
        protocol="IPv4",
        null=True,
        blank=True,
        help_text=_(
            "This host's address for the VXLAN tunnels that join a network's bridges on "
            "several hosts into one segment; empty: the host takes part in no tunnel."
        ),
        verbose_name=_("tunnel address"),
    )
    tunnel_port = models.PositiveIntegerField(
        default=4789,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text=_("The UDP port this host's tunnels listen on (VXLAN's is 4789)."),
        verbose_name=_("tunnel port"),
    )
    vnc_port_max = models.PositiveIntegerField(
        default=VNC_PORT_FLOOR + VNC_PORT_BLOCK - 1,
        validators=[MinValueValidator(VNC_PORT_FLOOR), MaxValueValidator(VNC_PORT_CEILING)],
        help_text=_("Last port of the range (inclusive); it bounds how many guests run here."),
        verbose_name=_("last console port"),
    )

    # What is placed here (kept by database triggers, see migration 0034): every VM whose
    # host this is, and every VM on its way here in a live migration that holds a slot
    # (compute.choices.SLOT_MIGRATION_PHASES), at the VM's size. Never written by Python:
    # ``save`` leaves them out, and ``compute.scheduler.hosts_recount`` repairs them.
    placed_vcpus = models.BigIntegerField(
        default=0,
        editable=False,
        help_text=_("vCPUs of the VMs placed here and of those migrating here."),
        verbose_name=_("placed vCPUs"),
    )
    placed_memory_mib = models.BigIntegerField(
        default=0,
        editable=False,
        help_text=_("Memory (MiB) of the VMs placed here and of those migrating here."),
        verbose_name=_("placed memory (MiB)"),
    )
    placed_vms = models.BigIntegerField(
        default=0,
        editable=False,
        help_text=_("VMs placed here and VMs migrating here (each takes a console port)."),
        verbose_name=_("placed VMs"),
    )

    class Meta:
        verbose_name = _("host")
        verbose_name_plural = _("hosts")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(vnc_port_min__lte=models.F("vnc_port_max")),
                name="host_vnc_port_range_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        """An update leaves the placed counters out: they move in the database only
        (this copy's may be stale), so a full save cannot write an old count back."""
        updating = not (self._state.adding or self.pk is None or kwargs.get("force_insert"))
        if updating and not args and kwargs.get("update_fields") is None:
            deferred = self.get_deferred_fields()  # as Django's save of a .only() copy
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in PLACED_FIELDS and f.attname not in deferred
            ]
        super().save(*args, **kwargs)

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

    @property
    def vnc_ports(self) -> tuple[int, int]:
        return (self.vnc_port_min, self.vnc_port_max)

    def clean(self) -> None:
        """The console port range is ordered and overlaps no other host's on the same
        machine (their QEMUs would race for the same ports)."""
        super().clean()
        low, high = self.vnc_port_min, self.vnc_port_max
        if low is None or high is None:
            return
        if low > high:
            raise ValidationError(
                {"vnc_port_max": f"The last console port must be at least {low}."}
            )
        machine = machine_of(self.uri or "")
        if not machine:
            return
        for other in Host.objects.exclude(pk=self.pk).only(
            "name", "uri", "vnc_port_min", "vnc_port_max"
        ):
            if machine_of(other.uri) != machine:
                continue
            if low <= other.vnc_port_max and other.vnc_port_min <= high:
                suggestion = "–".join(map(str, free_vnc_block(machine, exclude=self.pk)))
                raise ValidationError(
                    {
                        "vnc_port_min": (
                            f"Ports {low}–{high} overlap {other.name}'s console ports "
                            f"({other.vnc_port_min}–{other.vnc_port_max}) on the same "
                            f"machine; choose another range, e.g. {suggestion}."
                        )
                    }
                )


def free_vnc_block(
    machine: str, *, exclude: int | None = None, size: int = VNC_PORT_BLOCK
) -> tuple[int, int]:
    """The lowest block of ``size`` console ports no host on ``machine`` uses."""
    taken = sorted(
        (h.vnc_port_min, h.vnc_port_max)
        for h in Host.objects.exclude(pk=exclude).only("uri", "vnc_port_min", "vnc_port_max")
        if machine_of(h.uri) == machine
    )
    low = VNC_PORT_FLOOR
    for start, end in taken:
        if low + size - 1 < start:
            break
        low = max(low, end + 1)
    return low, min(low + size - 1, VNC_PORT_CEILING)
