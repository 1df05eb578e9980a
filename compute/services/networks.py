"""Tenant networks and VM network interfaces (NICs).

A network is validated and recorded here (``Ready`` at once: it holds no host state
yet); each host makes its libvirt network when a VM with an interface on it is
provisioned, started again, or migrated there (:func:`vm_networks_prepare`, called by
the libvirt and migration tasks). Deleting one is refused while any interface uses it;
otherwise it is ``Deleting`` until :func:`compute.tasks.networks.network_remove` has
removed it from every host.

Quota: a network holds one reservation ``network:<uid>`` of ``networks`` = 1, taken in
the transaction that records it and released once when it is gone.

A NIC gets a MAC address from Isotope (``52:54:00:xx:xx:xx``, unique) and optionally a
fixed address inside its network's DHCP range, which becomes a DHCP host entry on
every host of the network. A NIC added to a VM that has a domain is plugged in by
:func:`compute.tasks.networks.nic_apply` (hot-plugged when the VM runs); otherwise the
VM's provisioning puts it in the domain. The addresses a guest holds are read from the
DHCP leases by the tasks and the reconciler (:func:`vm_addresses_observe`).

Every write is a row-locked read-modify-write bumping ``resource_version``.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import uuid
from datetime import datetime
from typing import NamedTuple

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext

from compute.backends import NetworkSpec, NicSpec, backend_for_host
from compute.choices import NetworkKind, NetworkPhase, NicPhase, Phase
from compute.models import Network, NetworkInterface, SecurityGroup, VirtualMachine
from compute.texts import networks as network_texts
from monitoring.services import event_publish, resource_forget, resource_publish
from portal import sql
from portal.exceptions import Conflict, NotFound, QuotaExceeded, ValidationError
from tenants.choices import ReservationKind
from tenants.models import Tenant
from tenants.services import (
    audit_record,
    authorize,
    quota_check,
    quota_release,
    quota_reserve,
)

logger = logging.getLogger(__name__)

DEFAULT_NAME = "default"
# The smallest network: /29 leaves 6 addresses (gateway + 5 for guests).
MAX_PREFIX = 29
# The largest: /16 (dnsmasq hands out leases over the range; larger is never needed).
MIN_PREFIX = 16
MAC_PREFIX = "52:54:00"
# Interfaces a VM may have.
MAX_NICS = 8
# Address ranges a tenant network may not use.
FORBIDDEN = tuple(
    ipaddress.IPv4Network(n)
    for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
)

NETWORK_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "delete": (
        "network.delete",
        frozenset({NetworkPhase.READY, NetworkPhase.FAILED, NetworkPhase.DELETING}),
    ),
}
NIC_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "delete": ("nic.detach", frozenset(NicPhase.values)),
    "groups": ("nic.attach", frozenset(NicPhase.values) - {NicPhase.DETACHING}),
}


def _allowed(actions: dict, phase: str, role: str | None) -> list[str]:
    from tenants.permissions import role_allows

    return [
        name
        for name, (permission, phases) in actions.items()
        if phase in phases and role_allows(role, permission)
    ]


def network_actions(network: Network, role: str | None) -> list[str]:
    """The network buttons a user with ``role`` sees right now."""
    return _allowed(NETWORK_ACTIONS, network.phase, role)


def nic_actions(nic: NetworkInterface, role: str | None) -> list[str]:
    return _allowed(NIC_ACTIONS, nic.phase, role)


# --- Validation ------------------------------------------------------------------------
def _check_name(name, errors: dict, field: str = "name") -> str:
    from compute.services.volumes import NAME_RE

    name = str(name or "").strip()
    if not name:
        errors[field] = [gettext("A name is required.")]
    elif len(name) > 63 or not NAME_RE.fullmatch(name):
        errors[field] = [
            gettext(
                "Use at most 63 lowercase letters, digits and hyphens, starting and ending "
                "with a letter or digit (a DNS label)."
            )
        ]
    return name


def _address(value, field: str, errors: dict) -> ipaddress.IPv4Address | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        errors[field] = [
            gettext("%(text)s is not an IPv4 address (e.g. 10.0.0.1).") % {"text": repr(text)}
        ]
        return None


def _cidr(value, errors: dict) -> ipaddress.IPv4Network | None:
    text = str(value or "").strip()
    if not text:
        errors["cidr"] = [gettext("Give the network's address range, e.g. 10.0.0.0/24.")]
        return None
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        errors["cidr"] = [
            gettext("%(text)s is not an IPv4 network in CIDR form (e.g. 10.0.0.0/24).")
            % {"text": repr(text)}
        ]
        return None
    if "/" not in text:
        errors["cidr"] = [gettext("Give the prefix length too, e.g. %(text)s/24.") % {"text": text}]
    elif str(network) != text:
        errors["cidr"] = [
            gettext("%(text)s has host bits set; the network is %(network)s.")
            % {"text": text, "network": network}
        ]
    elif network.prefixlen > MAX_PREFIX:
        errors["cidr"] = [
            gettext(
                "/%(prefix)s is too small: a network needs at least /%(max)s "
                "(a gateway and five guests)."
            )
            % {"prefix": network.prefixlen, "max": MAX_PREFIX}
        ]
    elif network.prefixlen < MIN_PREFIX:
        errors["cidr"] = [
            gettext("/%(prefix)s is too large: at most /%(min)s.")
            % {"prefix": network.prefixlen, "min": MIN_PREFIX}
        ]
    elif any(network.overlaps(bad) for bad in FORBIDDEN):
        errors["cidr"] = [
            gettext("%(network)s is reserved (loopback, link-local, multicast).")
            % {"network": network}
        ]
    else:
        return network
    return None


def _validate_network(tenant: Tenant, *, name, cidr, gateway, dhcp_start, dhcp_end, kind) -> dict:
    """The clean fields of a new network, or ``ValidationError`` naming each bad one.
    Unset gateway and range default to the first host and the rest of the network."""
    errors: dict[str, list[str]] = {}
    name = _check_name(name, errors)
    if "name" not in errors and Network.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [
            gettext("A network named %(name)s exists already in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        ]
    kind = str(kind or NetworkKind.ISOLATED)
    if kind not in NetworkKind.values:
        errors["kind"] = [
            gettext("Choose one of %(choices)s.") % {"choices": ", ".join(NetworkKind.values)}
        ]
    network = _cidr(cidr, errors)
    gw = _address(gateway, "gateway", errors)
    start = _address(dhcp_start, "dhcp_start", errors)
    end = _address(dhcp_end, "dhcp_end", errors)
    if network is None:
        raise ValidationError(gettext("The network is not valid."), errors=errors)
    hosts = (network.network_address + 1, network.broadcast_address - 1)

    def usable(address, field: str, outside: str, edge: str) -> None:
        if address is None or field in errors:
            return
        if address not in network:
            errors[field] = [outside % {"address": address, "network": network}]
        elif address in (network.network_address, network.broadcast_address):
            errors[field] = [edge % {"network": network}]

    usable(
        gw,
        "gateway",
        gettext("The gateway %(address)s is outside %(network)s."),
        gettext("The gateway cannot be %(network)s's network or broadcast address."),
    )
    usable(
        start,
        "dhcp_start",
        gettext("The DHCP range's start %(address)s is outside %(network)s."),
        gettext("The DHCP range's start cannot be %(network)s's network or broadcast address."),
    )
    usable(
        end,
        "dhcp_end",
        gettext("The DHCP range's end %(address)s is outside %(network)s."),
        gettext("The DHCP range's end cannot be %(network)s's network or broadcast address."),
    )
    gw = gw or hosts[0]
    base = gw if "gateway" not in errors else hosts[0]
    if start is None and "dhcp_start" not in errors:
        start = base + 1 if base < hosts[1] else hosts[0]
    if end is None and "dhcp_end" not in errors:
        end = hosts[1] if base != hosts[1] else hosts[1] - 1
    if not {"dhcp_start", "dhcp_end"} & errors.keys():
        if start > end:
            errors["dhcp_end"] = [
                gettext("The range ends (%(high)s) before it starts (%(low)s).")
                % {"high": end, "low": start}
            ]
        elif start <= gw <= end and "gateway" not in errors:
            errors["gateway"] = [
                gettext("The gateway %(gateway)s is inside the DHCP range %(start)s–%(end)s.")
                % {"gateway": gw, "start": start, "end": end}
            ]
    if "cidr" not in errors:
        for other in Network.objects.filter(tenant=tenant).exclude(phase=NetworkPhase.DELETING):
            if other.network.overlaps(network):
                errors["cidr"] = [
                    gettext(
                        "%(network)s overlaps %(other)s (%(cidr)s) of this tenant; another "
                        "tenant's networks may overlap, your own may not."
                    )
                    % {"network": network, "other": other.name, "cidr": other.cidr}
                ]
                break
    if errors:
        raise ValidationError(gettext("The network is not valid."), errors=errors)
    return {
        "name": name,
        "cidr": str(network),
        "gateway": str(gw),
        "dhcp_start": str(start),
        "dhcp_end": str(end),
        "kind": kind,
    }


def _bridge_name() -> str:
    """``isob`` + 10 hex digits: unique (checked), and within Linux's 15 characters."""
    while True:
        name = f"isob{secrets.token_hex(5)}"
        if not Network.objects.filter(bridge=name).exists():
            return name


# --- Networks --------------------------------------------------------------------------
def network_create(
    *,
    actor,
    tenant: Tenant,
    name: str,
    cidr: str,
    gateway: str = "",
    dhcp_start: str = "",
    dhcp_end: str = "",
    kind: str = NetworkKind.ISOLATED,
) -> Network:
    """Validate and record a network (``Ready``), charging one ``networks`` of the
    quota. Nothing is saved or charged when a check fails; a quota refusal is also a
    Warning event."""
    authorize(actor=actor, tenant=tenant, permission="network.create", target=f"network/{name}")
    fields = _validate_network(
        tenant,
        name=name,
        cidr=cidr,
        gateway=gateway,
        dhcp_start=dhcp_start,
        dhcp_end=dhcp_end,
        kind=kind,
    )
    try:
        with transaction.atomic():
            network = _record(actor, tenant, fields)
    except IntegrityError:
        raise ValidationError(
            gettext("A network with this name exists already."),
            errors={"name": [gettext("Taken.")]},
        ) from None
    except QuotaExceeded as error:
        event_publish(
            tenant=tenant,
            kind="network",
            name=fields["name"],
            type="Warning",
            reason="QuotaExceeded",
            message=error.stored_message,
        )
        raise
    return network


def _record(actor, tenant: Tenant, fields: dict, *, is_default: bool = False) -> Network:
    uid = uuid.uuid4()
    quota_reserve(
        tenant=tenant,
        ref=f"network:{uid}",
        networks=1,
        kind=ReservationKind.NETWORK,
        object_id=str(uid),
    )
    network = Network.objects.create(
        uid=uid,
        tenant=tenant,
        bridge=_bridge_name(),
        is_default=is_default,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        **fields,
    )
    audit_record(
        actor=actor,
        action="network.create",
        tenant=tenant,
        target=f"network/{network.name}",
        detail={k: fields[k] for k in ("cidr", "gateway", "dhcp_start", "dhcp_end", "kind")},
    )
    event_publish(
        tenant=tenant,
        kind="network",
        name=network.name,
        uid=str(uid),
        reason="Created",
        new_object=True,
        message=network_texts.NETWORK_CREATED
        % {
            "cidr": network.cidr,
            "network_kind": _english(network.get_kind_display),
            "dhcp_start": network.dhcp_start,
            "dhcp_end": network.dhcp_end,
        },
    )
    _publish(network)
    return network


def default_cidr(tenant: Tenant) -> str:
    """A /24 of 10.64.0.0/10 picked from the tenant's id, so that the default networks
    of different tenants differ and can be active on one host together."""
    block = tenant.pk % (64 * 256)
    return f"10.{64 + block // 256}.{block % 256}.0/24"


def tenant_has_networks_sql(tenant: Tenant) -> tuple[str, list]:
    """Whether ``tenant`` has any network, as an SQL expression and its params (for a
    create's read that asks it on the way: ``network_default_ensure(has_networks=…)``)."""
    table = Network._meta.db_table  # a table name only; the value is a param
    return f"EXISTS (SELECT 1 FROM {table} WHERE {table}.tenant_id = %s)", [tenant.pk]  # noqa: S608


def network_default_ensure(
    *, actor, tenant: Tenant, has_networks: bool | None = None
) -> Network | None:
    """Inside the caller's transaction (a VM's create): give ``tenant`` its default
    network when it has no network at all. None when it has networks, or when its
    ``networks`` quota is used up (the VM is not refused for it). ``has_networks``:
    what an unlocked read of the caller's found already (``tenant_has_networks_sql``;
    None: read here)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("network_default_ensure must run inside the VM's transaction")
    if has_networks is None:  # every create asks: written out
        has_networks = sql.exists(Network, "tenant_id = %s", [tenant.pk])
    if has_networks:
        return None
    # Creates in a tenant lock its quota row last (``QuotaCharge``): lock it now, so
    # the tenant's first VMs created at once make one default network, and look again.
    quota_check(tenant=tenant)
    if Network.objects.filter(tenant=tenant).exists():
        return None
    fields = _validate_network(
        tenant,
        name=DEFAULT_NAME,
        cidr=default_cidr(tenant),
        gateway="",
        dhcp_start="",
        dhcp_end="",
        kind=NetworkKind.NAT,
    )
    try:
        with transaction.atomic():
            return _record(actor, tenant, fields, is_default=True)
    except QuotaExceeded:
        logger.info("no default network for %s: its networks quota is used up", tenant)
        return None


def network_delete(*, actor, network: Network) -> Network:
    """Delete ``network`` (refused while any interface is on it): ``Deleting`` until
    the task has removed it from every host, then gone and its quota released."""
    tenant = network.tenant
    authorize(
        actor=actor, tenant=tenant, permission="network.delete", target=f"network/{network.name}"
    )
    with transaction.atomic():
        network = _locked(network)
        users = list(
            NetworkInterface.objects.filter(network=network)
            .select_related("vm")
            .values_list("vm__name", "name")
        )
        if users:
            named = ", ".join(f"{vm}/{nic}" for vm, nic in users[:5])
            raise Conflict(
                gettext(
                    "%(network)s has interfaces (%(named)s%(more)s): remove them from their "
                    "VMs first."
                )
                % {
                    "network": network.name,
                    "named": named,
                    "more": ", …" if len(users) > 5 else "",
                },
                errors={
                    "nics": [
                        gettext("%(count)s interface(s) on this network.") % {"count": len(users)}
                    ]
                },
            )
        if network.phase == NetworkPhase.DELETING:
            # Asked again (a host did not answer before): the task runs again.
            pk = network.pk
            transaction.on_commit(lambda: _enqueue("network_remove", pk))
            return network
        network = _save(
            network, phase=NetworkPhase.DELETING, message="", phase_changed=timezone.now()
        )
        audit_record(
            actor=actor, action="network.delete", tenant=tenant, target=f"network/{network.name}"
        )
        event_publish(
            tenant=tenant,
            kind="network",
            name=network.name,
            uid=str(network.uid),
            reason="Deleting",
            message=network_texts.NETWORK_DELETING % {"cidr": network.cidr},
        )
        _publish(network)
        pk = network.pk
        transaction.on_commit(lambda: _enqueue("network_remove", pk))
    return network


def network_finalize_delete(network: Network) -> None:
    """The network is gone from every host: release its quota, delete its row."""
    with transaction.atomic():
        current = Network.objects.select_for_update().filter(pk=network.pk).first()
        if current is None:
            return
        quota_release(current.quota_ref)
        current.delete()
        _network_event(
            network,
            reason="Deleted",
            message=network_texts.NETWORK_DELETED % {"cidr": network.cidr},
        )
        resource_forget(tenant=network.tenant, kind="network", name=network.name)


def host_refused(host, error) -> str:
    """A host's refusal as a stored message: ``<host>: <the engine's words>`` (a name
    and an engine's words: nothing of Isotope's to translate), or the words after
    "A host" when no host is named."""
    if host:
        return f"{host}: {error}"
    return network_texts.A_HOST_REFUSED % {"error": error}


def network_fail(network: Network, message: str, *, reason: str = "Failed") -> None:
    """A host refused the network: ``Failed`` with the reason (a deletion retries)."""
    with transaction.atomic():
        current = Network.objects.select_for_update().filter(pk=network.pk).first()
        if current is None:
            return
        phase = (
            NetworkPhase.DELETING if current.phase == NetworkPhase.DELETING else NetworkPhase.FAILED
        )
        current = _save(current, phase=phase, message=message[:1000], phase_changed=timezone.now())
        _network_event(
            current,
            type="Warning",
            reason=reason,
            message=message,
        )
        _publish(current)


def network_ready(network: Network) -> None:
    """A host made the network after a failure: ``Ready`` again."""
    with transaction.atomic():
        current = Network.objects.select_for_update().filter(pk=network.pk).first()
        if current is None or current.phase != NetworkPhase.FAILED:
            return
        current = _save(current, phase=NetworkPhase.READY, message="", phase_changed=timezone.now())
        _publish(current)


def network_spec(network: Network) -> NetworkSpec:
    """The network as every host makes it, with the fixed addresses of its NICs (but
    of those being removed)."""
    net = network.network
    hosts = tuple(
        sorted(
            (mac, str(ip))
            for mac, ip in NetworkInterface.objects.filter(network=network, fixed_ip__isnull=False)
            .exclude(phase=NicPhase.DETACHING)
            .values_list("mac", "fixed_ip")
        )
    )
    return NetworkSpec(
        name=network.backend_name,
        bridge=network.bridge,
        gateway=network.gateway,
        prefix=net.prefixlen,
        dhcp_start=network.dhcp_start,
        dhcp_end=network.dhcp_end,
        nat=network.kind == NetworkKind.NAT,
        hosts=hosts,
        title=str(network),
    )


# --- NICs ------------------------------------------------------------------------------
def _mac() -> str:
    while True:
        tail = secrets.token_bytes(3)
        mac = f"{MAC_PREFIX}:" + ":".join(f"{b:02x}" for b in tail)
        if not NetworkInterface.objects.filter(mac=mac).exists():
            return mac


def _nic_name(vm: VirtualMachine) -> str:
    taken = set(NetworkInterface.objects.filter(vm=vm).values_list("name", flat=True))
    return next(f"nic{i}" for i in range(len(taken) + 1) if f"nic{i}" not in taken)


def _resolve_network(tenant: Tenant, network, errors: dict, field: str) -> Network | None:
    name = network.name if isinstance(network, Network) else str(network or "").strip()
    found = Network.objects.filter(tenant=tenant, name=name).first() if name else None
    if found is None:
        errors[field] = [
            gettext("No network named %(name)s in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        ]
    elif found.phase == NetworkPhase.DELETING:
        errors[field] = [gettext("%(name)s is being deleted.") % {"name": name}]
        return None
    return found


def _fixed_ip(network: Network, value, errors: dict) -> str | None:
    address = _address(value, "fixed_ip", errors)
    if address is None:
        return None
    start = ipaddress.IPv4Address(network.dhcp_start)
    end = ipaddress.IPv4Address(network.dhcp_end)
    if not start <= address <= end:
        errors["fixed_ip"] = [
            gettext("%(address)s is outside %(network)s's DHCP range %(start)s–%(end)s.")
            % {"address": address, "network": network.name, "start": start, "end": end}
        ]
        return None
    if NetworkInterface.objects.filter(network=network, fixed_ip=str(address)).exists():
        errors["fixed_ip"] = [
            gettext("%(address)s is reserved for another interface on %(network)s.")
            % {"address": address, "network": network.name}
        ]
        return None
    return str(address)


def _add_nic(vm: VirtualMachine, network: Network, *, name: str, fixed_ip: str | None, groups=None):
    """A new interface in ``groups`` (the tenant's default group when none)."""
    from compute.services import security_groups

    nic = NetworkInterface.objects.create(
        tenant=vm.tenant,
        vm=vm,
        network=network,
        name=name or _nic_name(vm),
        mac=_mac(),
        fixed_ip=fixed_ip,
    )
    groups = groups or [security_groups.default_group(vm.tenant)]
    nic.security_groups.set(groups)
    security_groups.nics_changed(groups)
    return nic


def hosts_with_overlap(tenant: Tenant, networks: list) -> set[int]:
    """Hosts running interfaces of other tenants on a network whose range overlaps one
    of ``networks`` (the tenant's networks, or their names): Linux routes one range to
    one bridge per host, so libvirt would refuse to start the second network there."""
    names = {n.name if isinstance(n, Network) else str(n) for n in networks}
    if not names:  # no query to compile (an empty ``__in`` is compiled, then dropped)
        return set()
    mine = [n.network for n in Network.objects.filter(tenant=tenant, name__in=names)]
    if not mine:
        return set()
    placed = (
        NetworkInterface.objects.exclude(tenant=tenant)
        .filter(vm__host__isnull=False)
        .values_list("vm__host_id", "network__cidr")
        .distinct()
    )
    return {
        host
        for host, cidr in placed
        if any(ipaddress.IPv4Network(cidr).overlaps(net) for net in mine)
    }


def vm_hosts_with_overlap(vm: VirtualMachine) -> set[int]:
    """The hosts ``vm`` cannot move to: another tenant's network active there overlaps
    one of the networks its interfaces are on (:func:`hosts_with_overlap`)."""
    names = list(
        NetworkInterface.objects.filter(vm=vm).values_list("network__name", flat=True).distinct()
    )
    return hosts_with_overlap(vm.tenant, names) if names else set()


def vm_nics_create(*, vm: VirtualMachine, networks: list) -> list[NetworkInterface]:
    """Inside the VM's create transaction: one interface per network named (in that
    order; ``nic0``, ``nic1``, …). ``ValidationError`` on ``networks`` for a name the
    tenant has no network of."""
    errors: dict[str, list[str]] = {}
    if len(networks) > MAX_NICS:
        raise ValidationError(
            gettext("Too many interfaces."),
            errors={"networks": [gettext("At most %(max)s interfaces.") % {"max": MAX_NICS}]},
        )
    found = []
    for item in networks:
        network = _resolve_network(vm.tenant, item, errors, "networks")
        if network is not None:
            found.append(network)
    if errors:
        raise ValidationError(gettext("The VM's networks are not valid."), errors=errors)
    nics = [_add_nic(vm, network, name=f"nic{i}", fixed_ip=None) for i, network in enumerate(found)]
    for nic in nics:
        _publish_nic(nic)
    return nics


def nic_create(
    *,
    actor,
    vm: VirtualMachine,
    network,
    name: str = "",
    fixed_ip: str = "",
    security_groups=None,
) -> NetworkInterface:
    """Add an interface on ``network`` (one of the tenant's) to ``vm``, with a new MAC,
    optionally a fixed address inside the network's DHCP range, in ``security_groups``
    (names; the tenant's default group when none). Plugged in by the task (hot-plugged
    when the VM runs). Nothing is saved when a check fails."""
    from compute.services.security_groups import resolve_groups

    tenant = vm.tenant
    authorize(actor=actor, tenant=tenant, permission="nic.attach", target=f"vm/{vm.name}")
    errors: dict[str, list[str]] = {}
    found = _resolve_network(tenant, network, errors, "network")
    groups = resolve_groups(tenant, security_groups, errors, "security_groups")
    if name not in (None, ""):
        name = _check_name(name, errors)
    if found is not None and fixed_ip not in (None, ""):
        fixed_ip = _fixed_ip(found, fixed_ip, errors)
    else:
        fixed_ip = None
    if errors:
        raise ValidationError(gettext("The interface is not valid."), errors=errors)
    try:
        with transaction.atomic():
            vm = VirtualMachine.objects.select_for_update(of=("self",)).get(pk=vm.pk)
            if vm.phase == Phase.DELETING:
                raise Conflict(
                    gettext("%(vm)s is being deleted.") % {"vm": vm.name},
                    errors={"vm": [gettext("Deleting.")]},
                )
            if vm.phase == Phase.MIGRATING:
                raise Conflict(
                    gettext("%(vm)s is migrating: add the interface when it has arrived.")
                    % {"vm": vm.name},
                    errors={"vm": [gettext("Migrating.")]},
                )
            if NetworkInterface.objects.filter(vm=vm).count() >= MAX_NICS:
                raise Conflict(
                    gettext("%(vm)s has %(max)s interfaces already.")
                    % {"vm": vm.name, "max": MAX_NICS},
                    errors={
                        "network": [gettext("At most %(max)s interfaces.") % {"max": MAX_NICS}]
                    },
                )
            if vm.host_id and vm.host_id in hosts_with_overlap(tenant, [found]):
                raise Conflict(
                    gettext(
                        "%(network)s (%(cidr)s) overlaps a network of another tenant that is "
                        "active on %(vm)s's host; use a network with another range."
                    )
                    % {"network": found.name, "cidr": found.cidr, "vm": vm.name},
                    errors={
                        "network": [gettext("Overlaps another tenant's network on this host.")]
                    },
                )
            if name and NetworkInterface.objects.filter(vm=vm, name=name).exists():
                raise ValidationError(
                    gettext("%(vm)s has an interface named %(name)s.")
                    % {"vm": vm.name, "name": repr(name)},
                    errors={"name": [gettext("Taken.")]},
                )
            nic = _add_nic(vm, found, name=name, fixed_ip=fixed_ip, groups=groups)
            audit_record(
                actor=actor,
                action="nic.attach",
                tenant=tenant,
                target=f"vm/{vm.name}/nic/{nic.name}",
                detail={
                    "network": found.name,
                    "mac": nic.mac,
                    "fixed_ip": fixed_ip,
                    "security_groups": [g.name for g in groups],
                },
            )
            event_publish(
                tenant=tenant,
                kind="vm",
                name=vm.name,
                uid=str(vm.uid),
                reason="InterfaceAdded",
                message=(network_texts.NIC_ADDED_FIXED if fixed_ip else network_texts.NIC_ADDED)
                % {"nic": nic.name, "mac": nic.mac, "network": found.name, "fixed_ip": fixed_ip},
            )
            _publish_nic(nic)
            interfaces_changed([found.pk])
            pk = nic.pk
            transaction.on_commit(lambda: _enqueue("nic_apply", pk))
    except IntegrityError:
        raise ValidationError(
            gettext("The interface's name or address is taken."),
            errors={"name": [gettext("Taken, or the address is reserved.")]},
        ) from None
    return nic


def nic_delete(*, actor, nic: NetworkInterface) -> NetworkInterface:
    """Take the interface out of its VM (``Detaching`` until the task is done)."""
    vm = nic.vm
    authorize(
        actor=actor,
        tenant=vm.tenant,
        permission="nic.detach",
        target=f"vm/{vm.name}/nic/{nic.name}",
    )
    with transaction.atomic():
        VirtualMachine.objects.select_for_update(of=("self",)).filter(pk=vm.pk).first()
        nic = _locked_nic(nic)
        if nic.vm.phase == Phase.MIGRATING:
            raise Conflict(
                gettext("%(vm)s is migrating: remove the interface when it has arrived.")
                % {"vm": vm.name},
                errors={"vm": [gettext("Migrating.")]},
            )
        if nic.phase == NicPhase.DETACHING:
            # Asked again (the guest had not let go): the task runs again.
            pk = nic.pk
            transaction.on_commit(lambda: _enqueue("nic_apply", pk))
            return nic
        nic = _save_nic(nic, phase=NicPhase.DETACHING, message="")
        from compute.services.security_groups import nics_changed

        nics_changed(list(nic.security_groups.all()))
        audit_record(
            actor=actor,
            action="nic.detach",
            tenant=vm.tenant,
            target=f"vm/{vm.name}/nic/{nic.name}",
            detail={"network": nic.network.name, "mac": nic.mac},
        )
        _vm_event(
            vm,
            reason="InterfaceRemoving",
            message=network_texts.NIC_REMOVING % {"nic": nic.name, "mac": nic.mac},
        )
        _publish_nic(nic)
        pk = nic.pk
        transaction.on_commit(lambda: _enqueue("nic_apply", pk))
    return nic


def nic_groups_set(*, actor, nic: NetworkInterface, groups) -> NetworkInterface:
    """Put the interface in ``groups`` (names of the tenant's groups, at least one)
    instead of the ones it is in. When its VM is on a host and not stopped, its own
    filter there is redefined by :func:`compute.tasks.networks.nic_filter_apply` after
    the commit (libvirt re-applies it to the running interface at once); the groups it
    left and joined, and the groups whose rules name them, are rebuilt by
    ``security_group_apply`` (their members changed). A stopped VM only records it: its
    filters are defined again when it starts. Nothing changes when a check fails."""
    from compute.services.security_groups import apply_later, nics_changed, resolve_groups

    vm = nic.vm
    tenant = vm.tenant
    authorize(
        actor=actor,
        tenant=tenant,
        permission="nic.attach",
        target=f"vm/{vm.name}/nic/{nic.name}",
    )
    errors: dict[str, list[str]] = {}
    found = resolve_groups(tenant, groups, errors, "security_groups")
    if not found and not errors:
        errors["security_groups"] = [gettext("Choose at least one security group.")]
    if errors:
        raise ValidationError(
            gettext("The interface's security groups are not valid."), errors=errors
        )
    with transaction.atomic():
        vm = VirtualMachine.objects.select_for_update(of=("self",)).get(pk=vm.pk)
        nic = _locked_nic(nic)
        if vm.phase in (Phase.MIGRATING, Phase.DELETING):
            raise Conflict(
                gettext("%(vm)s is %(phase)s: change the interface's groups later.")
                % {"vm": vm.name, "phase": vm.phase},
                errors={"vm": [vm.phase]},
            )
        if nic.phase == NicPhase.DETACHING:
            raise Conflict(
                gettext("%(nic)s is being removed.") % {"nic": nic.name},
                errors={"security_groups": [gettext("Being removed.")]},
            )
        before = list(nic.security_groups.order_by("name"))
        if {g.pk for g in before} == {g.pk for g in found}:
            return nic  # already so: nothing to record or apply
        nic.security_groups.set(found)
        nic = _save_nic(nic)
        names = [g.name for g in found]
        audit_record(
            actor=actor,
            action="nic.update",
            tenant=tenant,
            target=f"vm/{vm.name}/nic/{nic.name}",
            detail={"security_groups": names, "before": [g.name for g in before]},
        )
        changed = (
            network_texts.NIC_GROUPS_CHANGED
            if before
            else network_texts.NIC_GROUPS_CHANGED_FROM_NONE
        )
        _vm_event(
            vm,
            reason="InterfaceGroupsChanged",
            message=changed
            % {
                "nic": nic.name,
                "groups": ", ".join(names),
                "before": ", ".join(g.name for g in before),
            },
        )
        _publish_nic(nic)
        touched = list({g.pk: g for g in [*before, *found]}.values())
        for group in touched:
            apply_later(group)
        nics_changed(touched)
        if vm.host_id and vm.phase != Phase.STOPPED:
            pk = nic.pk
            transaction.on_commit(lambda: _enqueue("nic_filter_apply", pk))
    return nic


def nic_filter_observe(nic: NetworkInterface, failure: str = "") -> None:
    """The outcome of redefining an interface's filter: a host's refusal is its
    message and a Warning event; a success clears such a message (an attached
    interface has no other)."""
    with transaction.atomic():
        current = NetworkInterface.objects.select_for_update().filter(pk=nic.pk).first()
        if current is None:
            return
        if failure:
            message = (network_texts.NIC_FILTER_FAILED % {"failure": failure})[:1000]
            current = _save_nic(current, message=message)
            _vm_event(current.vm, type="Warning", reason="InterfaceFilterFailed", message=message)
        elif current.message and current.phase == NicPhase.ATTACHED:
            current = _save_nic(current, message="")
        else:
            return
        _publish_nic(current)


def vm_nic_spec(nic: NetworkInterface) -> NicSpec:
    return NicSpec(network=nic.network.backend_name, mac=nic.mac, filter=nic.filter_name)


def vm_nics(vm: VirtualMachine) -> tuple[NicSpec, ...]:
    """The interfaces a VM's domain is defined with (all but those being removed)."""
    table = NetworkInterface._meta.db_table
    nics = sql.select(  # written out (portal.sql): every define reads them
        NetworkInterface,
        f"{table}.vm_id = %s AND {table}.phase <> %s",
        [vm.pk, NicPhase.DETACHING],
        related=("network",),
        order_by=f"{table}.created, {table}.id",
    )
    return tuple(vm_nic_spec(nic) for nic in nics)


def vm_networks_prepare(
    vm: VirtualMachine, backend, *, host=None, mark_failed: bool = True
) -> None:
    """Make every network the VM has an interface on exist and run on ``host``
    (``backend``'s; default the VM's host) before a define, start or an incoming
    migration: the full network at its home host, elsewhere an extension of its segment
    joined by tunnels (:mod:`compute.services.segments`). A host's refusal raises and,
    with ``mark_failed`` (not for a migration's target: the network still works where
    the VM runs), marks the network Failed."""
    from compute.backends import BackendError, TransientBackendError
    from compute.services.segments import segment_join

    host = host or vm.host
    # Written out (portal.sql): every define, start and migration reads them.
    table, nics = Network._meta.db_table, NetworkInterface._meta.db_table
    networks = sql.select(
        Network,
        f"{table}.id IN (SELECT network_id FROM {nics} WHERE vm_id = %s)",  # noqa: S608
        [vm.pk],
        related=("tenant",),
        order_by=f"{table}.id",
    )
    for network in networks:
        try:
            if host is None:
                backend.network_ensure(network_spec(network))
            else:
                segment_join(network, host, network_spec(network))
        except BackendError as error:
            if mark_failed and not isinstance(error, TransientBackendError):
                network_fail(network, host_refused(host, error))
            raise
        if network.phase == NetworkPhase.FAILED:
            network_ready(network)
    from compute.services.security_groups import vm_filters_prepare

    vm_filters_prepare(vm, backend)


def vm_nics_attached(vm: VirtualMachine) -> None:
    """The domain was defined with the VM's interfaces: Pending ones are Attached."""
    with transaction.atomic():
        for nic in sql.select(  # written out (portal.sql): every define asks
            NetworkInterface,
            "vm_id = %s AND phase IN (%s, %s)",
            [vm.pk, NicPhase.PENDING, NicPhase.FAILED],
            order_by="id",
            for_update=True,
        ):
            _publish_nic(_save_nic(nic, phase=NicPhase.ATTACHED, message=""))


def nic_observe(nic: NetworkInterface, phase: str, message: str = "") -> NetworkInterface | None:
    """The task's outcome for one interface (a removed one is left alone). A removal
    asked while the task was on its way stands: an interface now Detaching stays so
    (an attach or its failure that ends after it does not undo it; the removal's task,
    next, takes the interface out of the domain). A removal's own outcome is Detaching."""
    with transaction.atomic():
        current = NetworkInterface.objects.select_for_update().filter(pk=nic.pk).first()
        if current is None:
            return None
        if current.phase == NicPhase.DETACHING and phase != NicPhase.DETACHING:
            return current
        current = _save_nic(current, phase=phase, message=message[:1000])
        if phase == NicPhase.FAILED:
            _vm_event(
                current.vm,
                type="Warning",
                reason="InterfaceFailed",
                message=network_texts.NIC_FAILED % {"nic": current.name, "message": message},
            )
        _publish_nic(current)
        return current


def nic_finalize_delete(nic: NetworkInterface) -> None:
    """The interface is out of the domain: delete its row (and its fixed address)."""
    with transaction.atomic():
        current = NetworkInterface.objects.select_for_update().filter(pk=nic.pk).first()
        if current is None:
            return
        vm = current.vm
        current.delete()
        _vm_event(
            vm,
            reason="InterfaceRemoved",
            message=network_texts.NIC_REMOVED % {"nic": nic.name, "mac": nic.mac},
        )
        resource_forget(tenant=vm.tenant, kind="nic", name=_live_name(nic))
        interfaces_changed([current.network_id])


def vm_nics_forget(vm: VirtualMachine) -> None:
    """The VM's row (and with it its interfaces) is about to go: drop their live states
    (and the rules naming their groups lose them as members)."""
    from compute.services.security_groups import nics_changed

    nics_changed(list(SecurityGroup.objects.filter(nics__vm=vm).distinct()))
    networks = []
    for name, network_id in NetworkInterface.objects.filter(vm=vm).values_list(
        "name", "network_id"
    ):
        resource_forget(tenant=vm.tenant, kind="nic", name=f"{vm.name}/{name}")
        networks.append(network_id)
    interfaces_changed(networks)


class AddressReading(NamedTuple):
    """What the hosts answered (``{mac: ["ip/prefix"]}``) and when they were asked: the
    start of the oldest reading it is made of."""

    addresses: dict[str, list[str]]
    read_at: datetime  # by the database's clock (portal.sql.clock)


def vm_addresses_read(
    vm: VirtualMachine,
    backend,
    *,
    nics: list | None = None,
    leases_read: dict | None = None,
    now=None,
) -> AddressReading:
    """The addresses of the running VM's interfaces from the DHCP leases: its host's,
    and for an interface on a network its host only extends, the leases of the
    network's home host (whose dnsmasq serves the segment).

    A caller going through many VMs (the reconciler) passes each one's ``nics`` (read
    with ``network__home_host``, see :func:`vm_nics_by_vm`) and one ``leases_read`` dict
    for the pass, so that a home host's leases are read once per network, not per VM
    (the reading is then as old as that read), and its clock (``now``). Times are the
    database's (:func:`portal.sql.clock`, or for a pass :func:`portal.sql.clock_anchored`):
    the processes that compare them may run on different machines."""
    from compute.services.segments import is_extension, tunnelled

    now = now or sql.clock
    read_at = now()
    addresses = backend.interface_addresses(vm.domain_name)
    if not tunnelled(vm.host):  # no host of its extends a segment: nothing more to read
        return AddressReading(addresses, read_at)
    if nics is None:
        nics = list(NetworkInterface.objects.filter(vm=vm).select_related("network__home_host"))
    if leases_read is None:
        leases_read = {}
    for network in {nic.network for nic in nics}:
        if not is_extension(network, vm.host):
            continue
        if network.pk not in leases_read:
            asked = now()
            home = backend_for_host(network.home_host)
            leases_read[network.pk] = (asked, home.network_leases(network.backend_name))
        asked, leases = leases_read[network.pk]
        read_at = min(read_at, asked)
        for nic in nics:
            if nic.network_id == network.pk and nic.mac in leases:
                addresses[nic.mac] = leases[nic.mac]
    return AddressReading(addresses, read_at)


def vm_addresses_observe(
    vm: VirtualMachine, reading: AddressReading, *, nics: list | None = None
) -> int:
    """Record the addresses the hosts reported (:func:`vm_addresses_read`) on the VM's
    interfaces (``nics``: the VM's, when the caller has read them already); an
    interface the report does not name has none. A reading older than the one an
    interface shows leaves it as it is: a task and the reconciler may read the same
    leases, and the later commit is not always the later reading. Returns how many
    interfaces changed (each pushed live)."""
    changed = 0
    if nics is None:
        nics = list(NetworkInterface.objects.filter(vm=vm).only("pk", "mac", "addresses"))
    for nic in nics:
        wanted = sorted(reading.addresses.get(nic.mac, []))
        if wanted == list(nic.addresses or []):
            continue
        with transaction.atomic():
            current = NetworkInterface.objects.select_for_update().filter(pk=nic.pk).first()
            if current is None or current.addresses == wanted:
                continue
            if current.addresses_read is not None and current.addresses_read > reading.read_at:
                continue  # a newer reading is shown
            current = _save_nic(current, addresses=wanted, addresses_read=reading.read_at)
            _publish_nic(current)
            changed += 1
            from compute.services.security_groups import nics_changed

            # Rules naming the interface's groups now know its new addresses.
            nics_changed(list(current.security_groups.all()))
    return changed


def vm_nics_by_vm(vm_ids) -> dict[int, list[NetworkInterface]]:
    """The interfaces of many VMs, with their networks and those networks' home hosts,
    in one query: ``{vm id: [nic, ...]}`` (VMs without any are left out)."""
    by_vm: dict[int, list[NetworkInterface]] = {}
    nics = NetworkInterface.objects.filter(vm__in=list(vm_ids)).select_related("network__home_host")
    for nic in nics.order_by("vm_id", "created", "id"):
        by_vm.setdefault(nic.vm_id, []).append(nic)
    return by_vm


# --- Plumbing --------------------------------------------------------------------------
def _locked(network: Network) -> Network:
    found = (
        Network.objects.select_for_update(of=("self",))
        .select_related("tenant")
        .filter(pk=network.pk)
        .first()
    )
    if found is None:
        raise NotFound(gettext("Network %(network)s not found.") % {"network": repr(network.name)})
    return found


def _locked_nic(nic: NetworkInterface) -> NetworkInterface:
    found = (
        NetworkInterface.objects.select_for_update(of=("self",))
        .select_related("tenant", "vm", "network")
        .filter(pk=nic.pk)
        .first()
    )
    if found is None:
        raise NotFound(gettext("Interface %(nic)s not found.") % {"nic": repr(nic.name)})
    return found


def _save(network: Network, **fields) -> Network:
    Network.objects.filter(pk=network.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    network.refresh_from_db()
    return network


def _save_nic(nic: NetworkInterface, **fields) -> NetworkInterface:
    NetworkInterface.objects.filter(pk=nic.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    nic.refresh_from_db()
    return nic


def network_state(network: Network) -> dict:
    """What the Networks page needs to redraw one row."""
    return {
        "name": network.name,
        "phase": network.phase,
        "message": network.message,
        "cidr": network.cidr,
        "kind": network.kind,
        "nics": network.nics.count(),
        "uid": str(network.uid),
        "resourceVersion": str(network.resource_version),
        "actionsByRole": {
            role: network_actions(network, role) for role in ("viewer", "operator", "admin")
        },
    }


def nic_state(nic: NetworkInterface) -> dict:
    """What the VM page needs to redraw one interface row."""
    return {
        "vm": nic.vm.name,
        "name": nic.name,
        "network": nic.network.name,
        "mac": nic.mac,
        "fixedIP": nic.fixed_ip,
        "securityGroups": [g.name for g in nic.security_groups.all()],
        "addresses": list(nic.addresses or []),
        "phase": nic.phase,
        "message": nic.message,
        "uid": str(nic.uid),
        "resourceVersion": str(nic.resource_version),
        "actionsByRole": {role: nic_actions(nic, role) for role in ("viewer", "operator", "admin")},
    }


def _live_name(nic: NetworkInterface) -> str:
    return f"{nic.vm.name}/{nic.name}"


def _publish(network: Network) -> None:
    resource_publish(
        tenant=network.tenant, kind="network", name=network.name, data=network_state(network)
    )


def interfaces_changed(network_ids) -> None:
    """Interfaces were added to or removed from these networks: after the commit, push
    each network's state again with its interface count read then (the Networks page's
    column). The count is not a field of the network's row, so its resourceVersion
    stays; a network written meanwhile is read as it is after that write. A hook of its
    own: registered between two live publishes of a transaction it would split their
    batch (``monitoring.services._live_on_commit``), so a caller that publishes more
    calls it after them."""
    ids = sorted(set(network_ids))
    if not ids:
        return

    def push() -> None:
        for network in Network.objects.filter(pk__in=ids).select_related("tenant"):
            _publish(network)

    transaction.on_commit(push, robust=True)


def _publish_nic(nic: NetworkInterface) -> None:
    from compute.services.load_balancers import vm_changed

    resource_publish(tenant=nic.tenant, kind="nic", name=_live_name(nic), data=nic_state(nic))
    vm_changed(nic.vm)  # its addresses are Service endpoints when the VM is a member


def _english(label) -> str:
    """A choice's label as stored in a message: English, whoever's request wrote it."""
    with translation.override("en"):
        return str(label())


def _vm_event(vm: VirtualMachine, *, reason: str, message: str, type: str = "Normal") -> None:
    event_publish(
        tenant=vm.tenant,
        kind="vm",
        name=vm.name,
        uid=str(vm.uid),
        type=type,
        reason=reason,
        message=message,
    )


def _network_event(network: Network, *, reason: str, message: str, type: str = "Normal") -> None:
    event_publish(
        tenant=network.tenant,
        kind="network",
        name=network.name,
        uid=str(network.uid),
        type=type,
        reason=reason,
        message=message,
    )


def _enqueue(task_name: str, pk: int) -> None:
    from compute.tasks import networks as tasks

    getattr(tasks, task_name).delay(pk)
