"""Tenant networks and the VMs' network interfaces on them.

A :class:`Network` is a tenant's IPv4 segment: a CIDR, a gateway (the host's address
on it) and a DHCP range. It is recorded in the portal and made on a host (a libvirt
network with its own bridge and dnsmasq) when a VM attached to it is placed there.
Addresses of different tenants may overlap: each network has a bridge of its own.

A :class:`NetworkInterface` (NIC) is one virtio interface of a VM on a network, with a
MAC address chosen by Isotope (in QEMU's ``52:54:00`` space) and optionally a fixed
address, which becomes a DHCP host entry of the network. The addresses the guest got
are read from the network's DHCP leases and kept on the NIC.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from compute.choices import NetworkKind, NetworkPhase, NicPhase, RuleDirection, RuleProtocol
from portal.models import Resource
from tenants.models import DNS_LABEL

# VXLAN ids of the networks' segments: this + the network's id (24 bits: 16.7 million).
VNI_BASE = 4096


class Network(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="networks",
        verbose_name=_("tenant"),
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
    )
    cidr = models.CharField(
        max_length=18,
        help_text=_("IPv4 network, e.g. 10.0.0.0/24."),
        verbose_name=_("CIDR"),
    )
    gateway = models.GenericIPAddressField(
        protocol="IPv4",
        help_text=_("The host's address on the network (DHCP server, and router for NAT)."),
        verbose_name=_("gateway"),
    )
    dhcp_start = models.GenericIPAddressField(
        protocol="IPv4",
        verbose_name=_("DHCP start"),
    )
    dhcp_end = models.GenericIPAddressField(
        protocol="IPv4",
        verbose_name=_("DHCP end"),
    )
    kind = models.CharField(
        max_length=8,
        choices=NetworkKind.choices,
        default=NetworkKind.ISOLATED,
        verbose_name=_("kind"),
    )
    is_default = models.BooleanField(
        default=False,
        help_text=_("Made for the tenant with its first VM."),
        verbose_name=_("default"),
    )
    bridge = models.CharField(
        max_length=15,
        unique=True,
        editable=False,
        help_text=_("The Linux bridge of the network on every host (at most 15 characters)."),
        verbose_name=_("bridge"),
    )
    home_host = models.ForeignKey(
        "compute.Host",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        help_text=_(
            "The host running the network's gateway and DHCP (the first host it was made "
            "on); other hosts extend its segment through tunnels."
        ),
        verbose_name=_("home host"),
    )
    phase = models.CharField(
        max_length=10,
        choices=NetworkPhase.choices,
        default=NetworkPhase.READY,
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
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("network")
        verbose_name_plural = _("networks")
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="A network with this name exists in the tenant.",
            ),
        ]
        indexes = [models.Index(fields=["phase"], name="compute_network_phase")]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def backend_name(self) -> str:
        """The libvirt network's name on every host."""
        return f"isonet-{self.uid}"

    @property
    def vni(self) -> int:
        """The VXLAN id of the network's segment across hosts: unique, derived from the
        row's id (ids 1–4095 are left to whatever else the hosts run). Not a column: a
        unique column would make the home's claim a key update, which waits for (and
        deadlocks with) a VM's create adding an interface on the network."""
        return VNI_BASE + self.pk

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def quota_ref(self) -> str:
        return f"network:{self.uid}"


class NetworkInterface(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="nics",
        verbose_name=_("tenant"),
    )
    vm = models.ForeignKey(
        "compute.VirtualMachine",
        on_delete=models.CASCADE,
        related_name="nics",
        verbose_name=_("VM"),
        db_index=False,
    )
    network = models.ForeignKey(
        Network,
        on_delete=models.PROTECT,
        related_name="nics",
        help_text=_("A network with interfaces is not deleted."),
        verbose_name=_("network"),
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        help_text=_("Unique among the VM's interfaces (nic0, nic1, … unless given)."),
        verbose_name=_("name"),
    )
    mac = models.CharField(
        max_length=17,
        unique=True,
        editable=False,
        help_text=_("Chosen by Isotope in 52:54:00:xx:xx:xx."),
        verbose_name=_("MAC address"),
    )
    fixed_ip = models.GenericIPAddressField(
        protocol="IPv4",
        null=True,
        blank=True,
        help_text=_("Reserved for this interface (a DHCP host entry), inside the DHCP range."),
        verbose_name=_("fixed IP"),
    )
    addresses = models.JSONField(
        default=list,
        blank=True,
        help_text=_("What the guest holds (address/prefix), from the network's DHCP leases."),
        verbose_name=_("addresses"),
    )
    addresses_read = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the host was asked for the addresses shown: a reading taken before it "
            "does not replace them."
        ),
        verbose_name=_("addresses read"),
    )
    phase = models.CharField(
        max_length=10,
        choices=NicPhase.choices,
        default=NicPhase.PENDING,
        verbose_name=_("phase"),
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
        verbose_name=_("message"),
    )

    class Meta:
        verbose_name = _("network interface")
        verbose_name_plural = _("network interfaces")
        ordering = ["vm", "created", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["vm", "name"],
                name="%(app_label)s_%(class)s_unique_name_vm",
                violation_error_message="The VM has an interface with this name.",
            ),
            models.UniqueConstraint(
                fields=["network", "fixed_ip"],
                condition=Q(fixed_ip__isnull=False),
                name="%(app_label)s_%(class)s_unique_fixed_ip_network",
                violation_error_message="This address is reserved for another interface.",
            ),
        ]
        indexes = [models.Index(fields=["phase"], name="compute_networkinterface_phase")]

    security_groups = models.ManyToManyField(
        "compute.SecurityGroup",
        related_name="nics",
        blank=True,
        help_text=_(
            "What traffic the interface lets through (the tenant's default group "
            "when none is chosen)."
        ),
    )

    def __str__(self) -> str:
        return f"{self.vm}/{self.name}"

    @property
    def filter_name(self) -> str:
        """The libvirt nwfilter of this interface: its groups' filters, then drop."""
        return f"isotope-nic-{self.uid}"


class SecurityGroup(Resource):
    """A tenant's named set of allow rules for interfaces. An interface in one or more
    groups takes what any of their rules allows (and replies to it); everything else
    to or from it is dropped. ``default`` (made with the tenant's first interface)
    allows traffic from its own members and all egress."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="security_groups",
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
    )
    description = models.CharField(
        max_length=200,
        blank=True,
    )
    is_default = models.BooleanField(
        default=False,
        help_text=_(
            "Made for the tenant with its first interface; interfaces that name no group are in it."
        ),
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
        help_text=_("Why the hosts last refused the group's filter (empty when applied)."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["tenant", "name"]
        verbose_name = "security group"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="A security group with this name exists in the tenant.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def filter_name(self) -> str:
        """The libvirt nwfilter holding the group's rules on every host."""
        return f"isotope-sg-{self.uid}"


class SecurityGroupRule(models.Model):
    """One allow rule of a group: a direction, a protocol, a port range (TCP/UDP) and
    the other side: an IPv4 CIDR or the members of a group (the tenant's own)."""

    group = models.ForeignKey(
        SecurityGroup,
        on_delete=models.CASCADE,
        related_name="rules",
    )
    direction = models.CharField(
        max_length=7,
        choices=RuleDirection.choices,
    )
    protocol = models.CharField(
        max_length=4,
        choices=RuleProtocol.choices,
    )
    port_min = models.PositiveIntegerField(
        null=True,
        blank=True,
    )
    port_max = models.PositiveIntegerField(
        null=True,
        blank=True,
    )
    remote_cidr = models.CharField(
        max_length=18,
        blank=True,
        help_text=_("IPv4 network of the other side (0.0.0.0/0: anywhere)."),
    )
    remote_group = models.ForeignKey(
        SecurityGroup,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="referencing_rules",
        help_text=_(
            "The other side is any interface in this group; a group that rules name is not deleted."
        ),
    )
    created = models.DateTimeField(
        auto_now_add=True,
    )

    class Meta:
        ordering = ["group", "id"]
        verbose_name = "security group rule"
        constraints = [
            models.CheckConstraint(
                condition=(Q(remote_cidr="") & Q(remote_group__isnull=False))
                | (~Q(remote_cidr="") & Q(remote_group__isnull=True)),
                name="%(app_label)s_%(class)s_one_remote",
                violation_error_message="A rule names a CIDR or a group, not both.",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.group}: {self.direction} {self.protocol} {self.ports_text} {self.remote_text}"
        )

    @property
    def ports_text(self) -> str:
        if self.port_min is None:
            return "*"
        if self.port_max in (None, self.port_min):
            return str(self.port_min)
        return f"{self.port_min}-{self.port_max}"

    @property
    def remote_text(self) -> str:
        return f"group:{self.remote_group.name}" if self.remote_group_id else self.remote_cidr
