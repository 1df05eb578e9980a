"""Security groups on real libvirt (qemu tier, node1): a running guest's interface is
bound to its own nwfilter (the domain's <filterref>, a binding libvirt lists) which
includes its groups' filters; the host's firewall holds the rules of that binding; a
rule added to a group reaches the running guest's firewall rules, and removing it takes
it out again; a hot-plugged interface in another group is bound to that group; deleting
the VM removes its interfaces' filters. A running guest's interface moved from a group
that opens one port to a group that opens another is refiltered in place (the same
binding, its filter now including the new group; the tap's rules follow)."""

from __future__ import annotations

import secrets
import subprocess
import xml.etree.ElementTree as ET

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import NicPhase, Phase
from compute.models import Network, NetworkInterface, SecurityGroup, VirtualMachine
from compute.services import networks as network_services
from compute.services import security_groups as group_services
from compute.services import vms as vm_services
from compute.services.security_groups import ANYWHERE
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.test_qemu_networks import networks_cleanup  # noqa: F401 - the fixture
from tests.compute.test_qemu_vms import node1  # noqa: F401 - the fixture
from tests.conftest import wait_for

pytestmark = pytest.mark.qemu


def bindings(conn) -> dict[str, str]:
    """The host's nwfilter bindings: {interface MAC: filter name}."""
    found = {}
    for binding in conn.listAllNWFilterBindings(0):
        root = ET.fromstring(binding.XMLDesc(0))
        found[root.find("./mac").get("address")] = root.find("./filterref").get("filter")
    return found


def firewall(command: str = "iptables-save") -> str:
    """What the host's firewall holds (nwfilter writes iptables rules for IPv4,
    ip6tables rules for IPv6)."""
    return subprocess.run([command], capture_output=True, text=True, check=True, timeout=30).stdout


def device_rules(device: str, command: str = "iptables-save") -> list[str]:
    return [line for line in firewall(command).splitlines() if device in line]


def test_a_running_guests_interface_is_filtered_and_follows_rule_changes(
    demo,
    node1,  # noqa: F811
    networks_cleanup,  # noqa: F811
    celery_worker,
):
    name = f"qs-{secrets.token_hex(3)}"
    third = secrets.randbelow(250) + 1
    network_services.network_create(
        actor=demo.bob, tenant=demo.acme, name=name, cidr=f"10.203.{third}.0/24"
    )
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=[name],
    )
    vm = wait_phase(vm, Phase.RUNNING, timeout=300)
    conn = shared_connection(node1.uri)
    nic = NetworkInterface.objects.get(vm=vm, name="nic0")
    default = SecurityGroup.objects.get(tenant=demo.acme, name="default")
    assert [g.name for g in nic.security_groups.all()] == ["default"]

    # The domain's interface names its filter, and libvirt bound it.
    domain = conn.lookupByName(vm.domain_name)
    iface = next(
        i
        for i in ET.fromstring(domain.XMLDesc(0)).iterfind("./devices/interface")
        if i.find("mac").get("address") == nic.mac
    )
    assert iface.find("filterref").get("filter") == nic.filter_name
    device = iface.find("target").get("dev")
    assert bindings(conn)[nic.mac] == nic.filter_name
    nic_filter = ET.fromstring(conn.nwfilterLookupByName(nic.filter_name).XMLDesc(0))
    assert [f.get("filter") for f in nic_filter.iter("filterref")] == [default.filter_name]
    group_filter = ET.fromstring(conn.nwfilterLookupByName(default.filter_name).XMLDesc(0))
    assert nic.mac in {m.get("srcmacaddr") for m in group_filter.iter("all")}
    # The binding's rules are in the host's firewall: chains named after the tap device.
    wait_for(lambda: device_rules(device), 30)
    assert not [line for line in device_rules(device) if "--dport 8443" in line]
    # IPv6 from and to the guest is dropped (no group rule allows any): link-local
    # addresses would otherwise reach every guest on the segment past the groups.
    v6 = device_rules(device, "ip6tables-save")
    assert any(line.startswith("-A FO-") and line.endswith("-j DROP") for line in v6), v6
    assert any(line.startswith("-A FI-") and line.endswith("-j DROP") for line in v6), v6

    # A rule added to the group reaches the running guest's firewall.
    rule = group_services.rule_add(
        actor=demo.bob,
        group=default,
        direction="ingress",
        protocol="tcp",
        port_min=8443,
        remote_cidr="10.77.0.0/16",
    )
    wait_for(
        lambda: any("10.77.0.0/16" in line and "8443" in line for line in device_rules(device)),
        120,
    )
    assert bindings(conn)[nic.mac] == nic.filter_name  # the same binding, new rules
    group_services.rule_remove(actor=demo.bob, group=default, rule_id=rule.pk)
    wait_for(lambda: not [line for line in device_rules(device) if "8443" in line], 120)

    # A hot-plugged interface in another group is bound to a filter including that group.
    web = group_services.group_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=f"web-{third}",
        rules=[
            {"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_cidr": "0.0.0.0/0"}
        ],
    )
    second = network_services.nic_create(
        actor=demo.bob, vm=vm, network=name, security_groups=[web.name]
    )
    wait_for(lambda: NetworkInterface.objects.get(pk=second.pk).phase == NicPhase.ATTACHED, 120)
    assert bindings(conn)[second.mac] == second.filter_name
    second_filter = ET.fromstring(conn.nwfilterLookupByName(second.filter_name).XMLDesc(0))
    assert [f.get("filter") for f in second_filter.iter("filterref")] == [web.filter_name]

    vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 180)
    assert nic.mac not in bindings(conn) and second.mac not in bindings(conn)
    names = {f.name() for f in conn.listAllNWFilters(0)}
    assert nic.filter_name not in names and second.filter_name not in names
    assert not Network.objects.filter(nics__vm_id=vm.pk).exists()


def test_a_running_guests_interface_moved_to_another_group_is_refiltered_in_place(
    demo,
    node1,  # noqa: F811
    networks_cleanup,  # noqa: F811
    celery_worker,
):
    name = f"qm-{secrets.token_hex(3)}"
    third = secrets.randbelow(250) + 1
    network_services.network_create(
        actor=demo.bob, tenant=demo.acme, name=name, cidr=f"10.204.{third}.0/24"
    )

    def allowing(group_name: str, port: int) -> SecurityGroup:
        rules = [
            {"direction": "ingress", "protocol": "tcp", "port_min": port, "remote_cidr": ANYWHERE}
        ]
        return group_services.group_create(
            actor=demo.bob, tenant=demo.acme, name=group_name, rules=rules
        )

    a = allowing(f"a-{third}", 18081)
    b = allowing(f"b-{third}", 18082)
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=[name],
    )
    vm = wait_phase(vm, Phase.RUNNING, timeout=300)
    conn = shared_connection(node1.uri)
    nic = NetworkInterface.objects.get(vm=vm, name="nic0")
    domain = conn.lookupByName(vm.domain_name)
    iface = next(
        i
        for i in ET.fromstring(domain.XMLDesc(0)).iterfind("./devices/interface")
        if i.find("mac").get("address") == nic.mac
    )
    device = iface.find("target").get("dev")

    def included() -> list[str]:
        root = ET.fromstring(conn.nwfilterLookupByName(nic.filter_name).XMLDesc(0))
        return [f.get("filter") for f in root.iter("filterref")]

    def ports() -> set[str]:
        return {p for p in ("18081", "18082") if any(p in line for line in device_rules(device))}

    # Into A: its port is open on the running guest's tap.
    network_services.nic_groups_set(actor=demo.bob, nic=nic, groups=[a.name])
    wait_for(lambda: ports() == {"18081"}, 120)
    assert included() == [a.filter_name]
    # Moved to B: A's port is closed and B's opened, on the same binding.
    network_services.nic_groups_set(actor=demo.bob, nic=nic, groups=[b.name])
    wait_for(lambda: ports() == {"18082"}, 120)
    assert included() == [b.filter_name]
    binding = ET.fromstring(conn.nwfilterBindingLookupByPortDev(device).XMLDesc(0))
    assert binding.find("./filterref").get("filter") == nic.filter_name
    assert bindings(conn)[nic.mac] == nic.filter_name
    moved = NetworkInterface.objects.get(pk=nic.pk)
    assert moved.message == "" and [g.name for g in moved.security_groups.all()] == [b.name]

    vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 180)
    for group in (a, b):
        group_services.group_delete(actor=demo.alice, group=group)
