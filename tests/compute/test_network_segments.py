"""One L2 segment per network across hosts: which host is a network's home, what the
other hosts make (an extension: the bridge alone), and the VXLAN device that joins
them (made for real in this machine's network namespace, with a bridge of its own)."""

from __future__ import annotations

import os
import secrets
import subprocess
import xml.etree.ElementTree as ET

import pytest

from compute.backends import BackendError, backend_for_host
from compute.backends.libvirt import LibvirtBackend, tunnels
from compute.backends.libvirt.xml import network_xml
from compute.choices import MigrationPhase, Phase
from compute.models import Host, Migration, Network, VirtualMachine
from compute.services import networks as network_services
from compute.services import segments
from compute.services import vms as vm_services
from tests.conftest import require

pytestmark = pytest.mark.libvirt_test_driver


@pytest.fixture
def hosts(demo, make_host, tiny_image):
    made = {}
    for name, port in (("node-a", 4789), ("node-b", 4790), ("node-c", 0)):
        host = make_host(name)
        fields = {"tunnel_address": "127.0.0.1", "tunnel_port": port} if port else {}
        # Capabilities as a QEMU host reports them (the test driver makes no tunnels).
        caps = {**host.capabilities, "tunnels": True, "live_migration": True}
        Host.objects.filter(pk=host.pk).update(capabilities=caps, **fields)
        made[name] = Host.objects.get(pk=host.pk)
    return made


def lab(demo) -> Network:
    return network_services.network_create(
        actor=None, tenant=demo.acme, name="lab", cidr="10.60.0.0/24", kind="nat"
    )


def on_lab(demo, name: str) -> VirtualMachine:
    """A VM of acme with one interface on lab (not placed: no worker runs here)."""
    return vm_services.vm_create(
        actor=None,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=["lab"],
    )


def test_the_first_host_a_network_is_made_on_is_its_home_with_a_vxlan_id_of_its_own(demo, hosts):
    network = lab(demo)
    assert network.home_host is None
    claimed = segments.home_claim(network, hosts["node-a"])
    assert claimed.home_host == hosts["node-a"]
    assert claimed.vni == segments.VNI_BASE + network.pk
    again = segments.home_claim(Network.objects.get(pk=network.pk), hosts["node-b"])
    assert again.home_host == hosts["node-a"] and again.vni == claimed.vni


def test_another_tunnelled_host_makes_only_a_bridge_of_its_own_the_home_the_full_network(
    demo, hosts
):
    network = segments.home_claim(lab(demo), hosts["node-a"])
    spec = network_services.network_spec(network)
    home = segments.host_network_spec(network, hosts["node-a"], spec)
    assert home == spec and not home.extension
    root = ET.fromstring(network_xml(home))
    assert root.find("ip").get("address") == "10.60.0.1"
    assert root.find("forward").get("mode") == "nat"

    extension = segments.host_network_spec(network, hosts["node-b"], spec)
    assert extension.extension
    assert extension.bridge == segments.extension_bridge(network, hosts["node-b"])
    root = ET.fromstring(network_xml(extension))
    assert root.find("name").text == network.backend_name
    assert root.find("bridge").get("name") == extension.bridge
    # No address (no route to clash with the home's), no DHCP server, no NAT.
    assert root.find("ip") is None and root.find("forward") is None

    # A host without a tunnel address gets the full network, as before.
    assert segments.host_network_spec(network, hosts["node-c"], spec) == spec


def test_bridge_and_tunnel_names_fit_linux_and_differ_per_host_and_network(demo, hosts):
    network = lab(demo)
    names = {
        f(network, host) for f in (segments.extension_bridge, segments.tunnel_name)
        for host in hosts.values()
    }  # fmt: skip
    assert len(names) == 6
    assert all(len(n) <= 15 and n.startswith(("isoe", "isov")) for n in names)
    assert network.bridge not in names


def test_the_segment_is_the_home_the_hosts_of_its_vms_and_their_migrations_targets(demo, hosts):
    network = segments.home_claim(lab(demo), hosts["node-a"])
    vm = on_lab(demo, "web")
    VirtualMachine.objects.filter(pk=vm.pk).update(host=hosts["node-b"], phase=Phase.RUNNING)
    assert segments.segment_hosts(network) == [hosts["node-a"], hosts["node-b"]]
    Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=hosts["node-b"],
        target=hosts["node-c"],
        phase=MigrationPhase.RUNNING,
    )
    assert segments.segment_hosts(network) == list(hosts.values())
    Migration.objects.update(phase=MigrationPhase.FAILED)
    assert hosts["node-c"] not in segments.segment_hosts(network)


def test_a_host_keeps_an_extension_while_a_vm_of_the_network_is_on_it_and_not_after(demo, hosts):
    """A deleted VM, or an interface taken out, leaves no bridge behind on a host that
    only extended the network for it (the home keeps its network)."""
    network = segments.home_claim(lab(demo), hosts["node-a"])
    spec = network_services.network_spec(network)
    node_b = hosts["node-b"]
    backend = backend_for_host(node_b)
    backend.network_ensure(segments.host_network_spec(network, node_b, spec))
    vms = [on_lab(demo, name) for name in ("web1", "web2", "web3")]
    VirtualMachine.objects.update(host=node_b)

    def deleted(vm):
        vm_services.vm_finalize_delete(VirtualMachine.objects.get(pk=vm.pk), backend)

    def extended() -> bool:
        return network.backend_name in backend.network_names()

    deleted(vms[0])
    assert extended()  # web2 and web3 are still on it
    # web2's only interface on the network comes out (as nic_apply ends a removal).
    VirtualMachine.objects.get(pk=vms[1].pk).nics.all().delete()
    segments.networks_left([network.pk], node_b)
    assert extended()  # web3 is still on it
    deleted(vms[2])
    assert not extended()
    # The home never leaves, whoever goes.
    segments.networks_left([network.pk], hosts["node-a"])
    assert Network.objects.get(pk=network.pk).home_host == hosts["node-a"]


@pytest.fixture
def bridge():
    """A Linux bridge of this test's own in this machine's network namespace."""
    require(os.geteuid() == 0, "making a bridge and a VXLAN device needs root")
    name = f"isotb{secrets.token_hex(4)}"
    subprocess.run(["ip", "link", "add", "name", name, "type", "bridge"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", "dev", name], check=False)


def test_the_tunnel_joins_the_bridge_and_sends_to_exactly_the_peers_given(bridge):
    from compute.backends import TunnelSpec

    name = f"isovt{secrets.token_hex(4)}"
    spec = TunnelSpec(
        name=name,
        bridge=bridge,
        vni=4096 + secrets.randbelow(10**6),
        local="127.0.0.1",
        port=47000 + secrets.randbelow(1000),
        peers=(("127.0.0.1", 4790), ("127.0.0.2", 4789)),
    )
    try:
        tunnels.ensure(spec)
        tunnels.ensure(spec)  # idempotent
        shown = subprocess.run(
            ["ip", "-d", "link", "show", "dev", name], capture_output=True, text=True, check=True
        ).stdout
        assert f"master {bridge}" in shown and "nolearning" in shown
        assert f"vxlan id {spec.vni}" in shown
        assert tunnels._peers(name) == set(spec.peers)
        fewer = TunnelSpec(**{**spec.__dict__, "peers": (("127.0.0.2", 4789),)})
        tunnels.ensure(fewer)
        assert tunnels._peers(name) == {("127.0.0.2", 4789)}
        assert name in tunnels.names("isovt")
    finally:
        assert tunnels.delete(name) is True
    assert tunnels.delete(name) is False and not tunnels.exists(name)


def test_a_tunnel_for_a_bridge_this_worker_cannot_see_is_refused_in_plain_words():
    from compute.backends import TunnelSpec

    backend = LibvirtBackend(uri="qemu+tcp://192.0.2.1/system")
    spec = TunnelSpec(
        name="isovnothere", bridge="isoenothere0", vni=5000, local="192.0.2.1", port=4789
    )
    with pytest.raises(BackendError) as refused:
        backend.tunnel_ensure(spec)
    assert "this worker does not run there" in str(refused.value)
    assert "isoenothere0" in refused.value.detail
    assert not tunnels.exists("isovnothere")
