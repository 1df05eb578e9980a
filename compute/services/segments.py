"""One L2 segment per network across hosts (VXLAN between the hosts' bridges).

The first host a network is made on becomes its *home* (``Network.home_host``, set
once under the network's row lock; the segment's VXLAN id is ``Network.vni``): it
runs the full libvirt network (gateway address, dnsmasq DHCP, NAT). Every other host
where one of its VMs runs (or is migrating to) gets an *extension*: a libvirt network
of the same name that is only a bridge of its own (``isoe`` + 11 hex digits): no
address, so no route that could clash with the home's and no second DHCP server on the
segment. On each host of a segment that spans two or more tunnelled hosts (a
``tunnel_address``, and a backend with ``capabilities["tunnels"]``), a VXLAN device
(``isov`` + 11 hex digits) joins the host's bridge to every other host's: a guest keeps
its address and its connections when it moves between them.

A host without a tunnel address gets the full network, as before: its guests share
the range but not the segment of the other hosts.

Joining and leaving hold the network's row lock (``FOR NO KEY UPDATE``: a VM's create
that adds an interface, and so takes a key-share lock on the network after locking its
host, never waits for it), so the hosts' tunnels are converged from one consistent view
of who is on the segment. The tunnels are made by the
process that runs this (a worker on the host); see :mod:`compute.backends.libvirt.tunnels`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from compute.backends import NetworkSpec, TunnelSpec, backend_for_host
from compute.choices import ACTIVE_MIGRATION_PHASES
from compute.models import Host, Migration, Network, VirtualMachine
from compute.models.networks import VNI_BASE  # noqa: F401 - segments.VNI_BASE

logger = logging.getLogger(__name__)

VNI_MAX = 2**24 - 1


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def extension_bridge(network: Network, host: Host) -> str:
    """The bridge of ``network`` on a host that extends it (≤ 15 characters, and
    apart from the home's ``isob`` + 10 digits: one character longer)."""
    return "isoe" + _digest(network.bridge, host.name)[:11]


def tunnel_name(network: Network, host: Host) -> str:
    """The VXLAN device of ``network`` on ``host``."""
    return "isov" + _digest("tunnel", network.bridge, host.name)[:11]


def tunnelled(host: Host | None) -> bool:
    """Does ``host`` take part in tunnels (an address, and a backend that makes them)?"""
    return bool(host is not None and host.tunnel_address and host.can("tunnels"))


def is_extension(network: Network, host: Host) -> bool:
    """Is ``network`` on ``host`` only a bridge joined to its home's by a tunnel?"""
    home = network.home_host
    return home is not None and home.pk != host.pk and tunnelled(host) and tunnelled(home)


def host_network_spec(network: Network, host: Host, spec: NetworkSpec) -> NetworkSpec:
    """``spec`` (the network as its home makes it) as ``host`` makes it."""
    if not is_extension(network, host):
        return spec
    return dataclasses.replace(spec, bridge=extension_bridge(network, host), extension=True)


def host_bridge(network: Network, host: Host) -> str:
    return extension_bridge(network, host) if is_extension(network, host) else network.bridge


def home_claim(network: Network, host: Host) -> Network:
    """The network with its home host: ``host`` when it has none yet (compare-and-set
    under the row lock, with its VXLAN id)."""
    if network.home_host_id is not None:
        return network
    with transaction.atomic():
        current = Network.objects.select_for_update(of=("self",), no_key=True).get(pk=network.pk)
        if current.home_host_id is None:
            if current.vni > VNI_MAX:  # 16.7 million networks: never here, but not silently
                raise ValueError(f"no VXLAN id left for network {current.pk}")
            Network.objects.filter(pk=current.pk, home_host__isnull=True).update(
                home_host=host,
                updated=timezone.now(),
                resource_version=F("resource_version") + 1,
            )
    return Network.objects.select_related("tenant", "home_host").get(pk=network.pk)


def segment_hosts(network: Network, *, joining: Host | None = None) -> list[Host]:
    """The hosts on the network's segment: its home, the hosts of the VMs with an
    interface on it, the targets of their migrations in progress, and ``joining``."""
    vms = VirtualMachine.objects.filter(nics__network=network)
    ids = set(vms.exclude(host=None).values_list("host_id", flat=True))
    ids |= set(
        Migration.objects.filter(vm__in=vms, phase__in=ACTIVE_MIGRATION_PHASES).values_list(
            "target_id", flat=True
        )
    )
    if network.home_host_id:
        ids.add(network.home_host_id)
    if joining is not None:
        ids.add(joining.pk)
    return list(Host.objects.filter(pk__in=ids).order_by("pk"))


def _tunnel_spec(network: Network, host: Host, others: list[Host]) -> TunnelSpec:
    return TunnelSpec(
        name=tunnel_name(network, host),
        bridge=host_bridge(network, host),
        vni=network.vni,
        local=host.tunnel_address,
        port=host.tunnel_port,
        peers=tuple((o.tunnel_address, o.tunnel_port) for o in others),
    )


def _converge(network: Network, hosts: list[Host], spec: NetworkSpec) -> None:
    """Every tunnelled host of ``hosts`` has the network and a tunnel to each other
    one (none when it is alone)."""
    members = [h for h in hosts if tunnelled(h)]
    if len(members) < 2:
        for host in members:
            backend_for_host(host).tunnel_delete(tunnel_name(network, host))
        return
    for host in members:
        backend = backend_for_host(host)
        backend.network_ensure(host_network_spec(network, host, spec))
        backend.tunnel_ensure(_tunnel_spec(network, host, [o for o in members if o != host]))


def segment_join(network: Network, host: Host, spec: NetworkSpec) -> None:
    """Make the network on ``host`` (the full network at its home, else an extension)
    and join it to the rest of the segment (``spec``: the network as its home makes
    it). Raises BackendError when a host refuses."""
    network = home_claim(network, host)
    backend_for_host(host).network_ensure(host_network_spec(network, host, spec))
    if not tunnelled(host):
        return
    with transaction.atomic():
        network = _locked(network)
        _converge(network, segment_hosts(network, joining=host), spec)


def segment_leave(network: Network, host: Host, spec: NetworkSpec) -> bool:
    """``host`` may have left the segment (its last VM on the network moved away, or
    one that was coming did not): unless it is the network's home or still on the
    segment, its extension and tunnel go and the others stop sending to it. True when
    they went."""
    with transaction.atomic():
        network = _locked(network)
        if network.home_host_id in (None, host.pk) or not is_extension(network, host):
            return False
        hosts = segment_hosts(network)
        if host in hosts:
            return False
        backend = backend_for_host(host)
        backend.tunnel_delete(tunnel_name(network, host))
        backend.network_delete(network.backend_name)
        _converge(network, hosts, spec)
    logger.info("network %s left %s", network, host)
    return True


def segment_forget(network: Network, host: Host) -> None:
    """The network is being deleted: its tunnel on ``host`` goes (before its bridge)."""
    if tunnelled(host):
        backend_for_host(host).tunnel_delete(tunnel_name(network, host))


def _locked(network: Network) -> Network:
    return (
        Network.objects.select_for_update(of=("self",), no_key=True)
        .select_related("tenant", "home_host")
        .get(pk=network.pk)
    )


def vm_segments_left(vm: VirtualMachine, host: Host) -> None:
    """``vm`` no longer runs on ``host`` (it migrated away, or its migration there
    failed): the networks it has interfaces on leave ``host`` where nobody else uses
    them."""
    networks_left(vm.nics.values_list("network_id", flat=True), host)


def networks_left(network_ids, host: Host | None) -> None:
    """``host`` may no longer need the networks ``network_ids`` (a VM moved away from
    it or was deleted there, or an interface came out): each one that ``host`` only
    extends leaves it where nobody else uses it. A host's refusal is logged: what stays
    is a bridge nobody is on."""
    from compute.backends import BackendError
    from compute.services.networks import network_spec

    if not tunnelled(host):
        return  # it never extends a network
    for network in (
        Network.objects.filter(pk__in=set(network_ids), home_host__isnull=False)
        .exclude(home_host=host)
        .select_related("tenant", "home_host")
    ):
        try:
            segment_leave(network, host, network_spec(network))
        except BackendError as error:
            logger.warning("network %s may be left on %s: %s", network, host, error.detail)
