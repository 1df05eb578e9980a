"""Tenant networks and VM interfaces: validation with field errors, the default network,
libvirt networks made on the VM's host (libvirt's test driver through a real Celery
worker), interfaces in the domain with Isotope's MACs, fixed addresses as DHCP host
entries, hot-plug and removal, addresses from the leases, deletion and quota."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from datetime import timedelta

import libvirt
import pytest
from django.utils import timezone

from compute.backends import backend_for_host
from compute.backends.libvirt.backend import shared_connection
from compute.choices import NetworkPhase, NicPhase, Phase
from compute.models import Network, NetworkInterface, VirtualMachine
from compute.services import networks as network_services
from compute.services import vms as vm_services
from monitoring import live
from monitoring.models import Event
from portal import sql
from portal.exceptions import Conflict, PermissionDenied, QuotaExceeded, ValidationError
from tenants.models import AuditLog, Quota
from tenants.services import quota_set
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import wait_for


def used_networks(tenant) -> int:
    return Quota.objects.get(tenant=tenant).used_networks


def vm_on(demo, name="web1", networks=("default",), **kwargs) -> VirtualMachine:
    """Bob's VM with an interface on each of ``networks`` (accepted, not waited for)."""
    return vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=list(networks),
        **kwargs,
    )


def make(demo, name="net1", cidr="10.1.0.0/24", tenant=None, actor=None, **kwargs) -> Network:
    return network_services.network_create(
        actor=actor or demo.bob, tenant=tenant or demo.acme, name=name, cidr=cidr, **kwargs
    )


# --- Validation ------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cidr": "10.1.0.0/33"}, "cidr", "not an IPv4 network"),
        ({"cidr": "banana"}, "cidr", "not an IPv4 network"),
        ({"cidr": "10.1.0.0"}, "cidr", "prefix length"),
        ({"cidr": "10.1.0.5/24"}, "cidr", "host bits set; the network is 10.1.0.0/24"),
        ({"cidr": "10.1.0.0/30"}, "cidr", "too small"),
        ({"cidr": "10.0.0.0/8"}, "cidr", "too large"),
        ({"cidr": "127.0.0.0/24"}, "cidr", "reserved"),
        ({"cidr": "fd00::/64"}, "cidr", "not an IPv4 network"),
        ({"gateway": "10.2.0.1"}, "gateway", "outside 10.1.0.0/24"),
        ({"gateway": "10.1.0.255"}, "gateway", "broadcast"),
        ({"gateway": "nope"}, "gateway", "not an IPv4 address"),
        ({"dhcp_start": "10.1.0.200", "dhcp_end": "10.1.0.100"}, "dhcp_end", "before it starts"),
        ({"dhcp_start": "10.1.0.1"}, "gateway", "inside the DHCP range"),
        ({"dhcp_end": "10.1.1.7"}, "dhcp_end", "outside"),
        ({"kind": "bridged"}, "kind", "Choose one of"),
        ({"name": "Bad_Name"}, "name", "DNS label"),
    ],
)
def test_a_bad_network_is_refused_on_its_field_and_nothing_is_kept(demo, fields, field, words):
    with pytest.raises(ValidationError) as refused:
        make(demo, **fields)
    assert words in " ".join(refused.value.errors[field])
    assert not Network.objects.exists()
    assert used_networks(demo.acme) == 0


@pytest.mark.unit
def test_a_network_gets_a_gateway_a_range_and_a_bridge_and_is_charged_once(demo):
    network = make(demo, cidr="10.1.0.0/24")
    assert (network.gateway, network.dhcp_start, network.dhcp_end) == (
        "10.1.0.1",
        "10.1.0.2",
        "10.1.0.254",
    )
    assert network.phase == NetworkPhase.READY
    assert network.bridge.startswith("isob") and len(network.bridge) <= 15
    assert used_networks(demo.acme) == 1
    assert AuditLog.objects.filter(action="network.create", target="network/net1").exists()
    with pytest.raises(ValidationError) as taken:
        make(demo, cidr="10.9.0.0/24")
    assert "exists already" in taken.value.errors["name"][0]


@pytest.mark.unit
def test_networks_may_overlap_between_tenants_but_not_within_one(demo):
    mine = make(demo, cidr="10.1.0.0/24")
    theirs = make(demo, cidr="10.1.0.0/24", tenant=demo.globex, actor=demo.dave)
    assert mine.cidr == theirs.cidr and mine.bridge != theirs.bridge
    with pytest.raises(ValidationError) as overlap:
        make(demo, name="net2", cidr="10.1.0.128/25")
    assert "overlaps net1" in overlap.value.errors["cidr"][0]


@pytest.mark.unit
def test_the_networks_quota_and_the_roles_refuse_a_network(demo):
    quota_set(actor=None, tenant=demo.acme, limits={"networks": 1})
    make(demo)
    with pytest.raises(QuotaExceeded):
        make(demo, name="net2", cidr="10.2.0.0/24")
    assert Network.objects.filter(tenant=demo.acme).count() == 1
    assert Event.objects.filter(name="net2", reason="QuotaExceeded").exists()
    with pytest.raises(PermissionDenied):
        make(demo, name="net3", cidr="10.3.0.0/24", actor=demo.carol)


# --- On a host ---------------------------------------------------------------------------
def domain_interfaces(host, vm, flags=libvirt.VIR_DOMAIN_XML_INACTIVE) -> list[tuple]:
    domain = shared_connection(host.uri).lookupByName(vm.domain_name)
    root = ET.fromstring(domain.XMLDesc(flags))
    return [
        (i.get("type"), i.find("mac").get("address") if i.find("mac") is not None else None)
        for i in root.iterfind("./devices/interface")
    ]


def host_network(host, network) -> libvirt.virNetwork:
    return shared_connection(host.uri).networkLookupByName(network.backend_name)


def nic(vm, name) -> NetworkInterface:
    return NetworkInterface.objects.select_related("network", "vm").get(vm=vm, name=name)


@pytest.mark.libvirt_test_driver
def test_a_vm_on_two_networks_has_their_interfaces_and_addresses(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    # The tenant's first VM brings its default network.
    vm_on(demo, "web0", ["default"])
    lab = make(demo, name="lab", cidr="192.168.50.0/24", kind="isolated")
    vm = vm_on(demo, "web1", ["default", "lab"])
    default = Network.objects.get(tenant=demo.acme, name="default")
    assert default.is_default and default.kind == "nat"
    assert ipaddress.IPv4Network(default.cidr).prefixlen == 24
    assert used_networks(demo.acme) == 2
    vm = wait_phase(vm, Phase.RUNNING)

    nic0, nic1 = nic(vm, "nic0"), nic(vm, "nic1")
    assert (nic0.network, nic1.network) == (default, lab)
    assert nic0.mac.startswith("52:54:00:") and nic0.mac != nic1.mac
    assert {nic0.phase, nic1.phase} == {NicPhase.ATTACHED}
    # virtio interfaces on the tenant's networks, with Isotope's MACs; no user-mode one.
    assert domain_interfaces(host, vm) == [("network", nic0.mac), ("network", nic1.mac)]
    for network in (default, lab):
        made = host_network(host, network)
        assert made.isActive() and made.bridgeName() == network.bridge
    # The test driver answers a lease for every interface of a running domain.
    wait_for(lambda: nic(vm, "nic1").addresses, message="no address on nic1")
    address = ipaddress.IPv4Interface(nic(vm, "nic1").addresses[0])
    assert address.ip in ipaddress.IPv4Network(lab.cidr)
    # Each reading is stamped by the database's clock when it begins, and the one that
    # gave the address is kept with it.
    assert nic(vm, "nic1").addresses_read <= sql.clock()
    before = sql.clock()
    reading = network_services.vm_addresses_read(vm, backend_for_host(vm.host))
    assert before <= reading.read_at <= sql.clock()
    assert reading.addresses[nic1.mac] == nic(vm, "nic1").addresses

    # Later VMs of the tenant bring no second default network.
    assert Network.objects.filter(tenant=demo.acme).count() == 2


@pytest.mark.unit
def test_a_reading_of_the_leases_older_than_the_one_shown_does_not_replace_it(
    demo, make_host, tiny_image, django_capture_on_commit_callbacks
):
    """The start task and the reconciler both read a guest's leases and each records
    what it read after its own read: the reconciler's reading from before the guest
    had its lease may commit after the task's reading with it. The older reading
    leaves the address shown, on the API and on open pages; a newer one moves it."""
    make_host()
    vm = vm_on(demo, "web1", ["default"])
    mac = nic(vm, "nic0").mac
    before = timezone.now()
    leased = network_services.AddressReading({mac: ["10.0.0.17/24"]}, before + timedelta(seconds=2))
    late = network_services.AddressReading({}, before + timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert network_services.vm_addresses_observe(vm, leased) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert network_services.vm_addresses_observe(vm, late) == 0

    assert nic(vm, "nic0").addresses == ["10.0.0.17/24"]
    [shown] = live.state_snapshot("acme", "nic", "web1/nic0")
    assert shown["data"]["addresses"] == ["10.0.0.17/24"]
    # The guest let go of its lease, and a reading after that says so.
    gone = network_services.AddressReading({}, before + timedelta(seconds=3))
    with django_capture_on_commit_callbacks(execute=True):
        assert network_services.vm_addresses_observe(vm, gone) == 1
    assert nic(vm, "nic0").addresses == []
    [shown] = live.state_snapshot("acme", "nic", "web1/nic0")
    assert shown["data"]["addresses"] == []


@pytest.mark.unit
def test_a_network_s_live_state_counts_its_interfaces_as_they_come_and_go(
    demo, make_host, tiny_image, django_capture_on_commit_callbacks
):
    """The Networks page shows each network's interface count: an interface added by a
    VM's create or later, or removed, pushes the network's state again after the
    commit, at the same resourceVersion (the count is not part of its row)."""

    def shown(name: str) -> dict:
        [state] = live.state_snapshot("acme", "network", name)
        return state["data"]

    make_host()
    with django_capture_on_commit_callbacks(execute=True):
        vm_on(demo, "web0", ["default"])  # the tenant's first VM brings the network
    assert shown("default")["nics"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        lab = make(demo, name="lab", cidr="192.168.50.0/24")
    version = shown("lab")["resourceVersion"]
    assert shown("lab")["nics"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        vm = vm_on(demo, "web1", ["default", "lab"])
    assert (shown("lab")["nics"], shown("default")["nics"]) == (1, 2)
    with django_capture_on_commit_callbacks(execute=True):
        added = network_services.nic_create(actor=demo.bob, vm=vm, network="lab")
    assert shown("lab")["nics"] == 2
    with django_capture_on_commit_callbacks(execute=True):
        network_services.nic_finalize_delete(added)
    assert shown("lab")["nics"] == 1
    assert (
        shown("lab")["resourceVersion"]
        == version
        == str(Network.objects.get(pk=lab.pk).resource_version)
    )
    with django_capture_on_commit_callbacks(execute=True):
        network_services.vm_nics_forget(vm)
        VirtualMachine.objects.filter(pk=vm.pk).delete()  # as vm_finalize_delete does
    assert (shown("lab")["nics"], shown("default")["nics"]) == (0, 1)


@pytest.mark.libvirt_test_driver
def test_a_vm_without_networks_keeps_its_user_mode_interface(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    vm = wait_phase(vm, Phase.RUNNING)
    assert [kind for kind, _mac in domain_interfaces(host, vm)] == ["user"]
    # Its tenant got the default network all the same, ready to be chosen.
    assert Network.objects.filter(tenant=demo.acme, name="default", is_default=True).exists()


@pytest.mark.libvirt_test_driver
def test_a_nic_is_hot_added_with_a_fixed_address_then_removed(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = vm_on(demo, "web1", ["default"])
    lab = make(demo, name="lab", cidr="192.168.50.0/24")
    vm = wait_phase(vm, Phase.RUNNING)

    with pytest.raises(ValidationError) as outside:
        network_services.nic_create(actor=demo.bob, vm=vm, network="lab", fixed_ip="192.168.50.1")
    assert "outside lab's DHCP range" in outside.value.errors["fixed_ip"][0]
    with pytest.raises(ValidationError) as unknown:
        network_services.nic_create(actor=demo.bob, vm=vm, network="nope")
    assert "No network named 'nope'" in unknown.value.errors["network"][0]
    with pytest.raises(PermissionDenied):
        network_services.nic_create(actor=demo.carol, vm=vm, network="lab")
    assert NetworkInterface.objects.filter(vm=vm).count() == 1

    added = network_services.nic_create(
        actor=demo.bob, vm=vm, network="lab", fixed_ip="192.168.50.10"
    )
    assert added.name == "nic1" and added.phase == NicPhase.PENDING
    wait_for(lambda: nic(vm, "nic1").phase == NicPhase.ATTACHED, message="nic1 not attached")
    assert ("network", added.mac) in domain_interfaces(host, vm)
    hosts = ET.fromstring(host_network(host, lab).XMLDesc(0)).iterfind("./ip/dhcp/host")
    assert [(h.get("mac"), h.get("ip")) for h in hosts] == [(added.mac, "192.168.50.10")]
    assert Event.objects.filter(name="web1", reason="InterfaceAdded").exists()
    assert AuditLog.objects.filter(action="nic.attach", target="vm/web1/nic/nic1").exists()
    with pytest.raises(ValidationError) as reserved:
        network_services.nic_create(actor=demo.bob, vm=vm, network="lab", fixed_ip="192.168.50.10")
    assert "reserved for another interface" in reserved.value.errors["fixed_ip"][0]

    with pytest.raises(Conflict) as in_use:
        network_services.network_delete(actor=demo.alice, network=lab)
    assert "web1/nic1" in in_use.value.message
    assert Network.objects.get(pk=lab.pk).phase == NetworkPhase.READY

    network_services.nic_delete(actor=demo.bob, nic=nic(vm, "nic1"))
    wait_for(
        lambda: not NetworkInterface.objects.filter(pk=added.pk).exists(), message="nic1 stays"
    )
    assert ("network", added.mac) not in domain_interfaces(host, vm)
    # Its fixed address is free again in the host's dnsmasq.
    wait_for(
        lambda: (
            not list(ET.fromstring(host_network(host, lab).XMLDesc(0)).iterfind("./ip/dhcp/host"))
        ),
        message="the fixed address stays reserved on the host",
    )

    assert used_networks(demo.acme) == 2
    with pytest.raises(PermissionDenied):
        network_services.network_delete(actor=demo.bob, network=lab)
    network_services.network_delete(actor=demo.alice, network=lab)
    wait_for(lambda: not Network.objects.filter(pk=lab.pk).exists(), message="lab stays")
    assert lab.backend_name not in [n.name() for n in shared_connection(host.uri).listAllNetworks()]
    assert used_networks(demo.acme) == 1


@pytest.mark.libvirt_test_driver
def test_a_stopped_vms_new_nic_is_in_its_definition_and_a_deleted_vm_frees_the_network(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    lab = make(demo, name="lab", cidr="192.168.50.0/24")
    vm = vm_on(demo, "web1", (), start=False)
    vm = wait_phase(vm, Phase.STOPPED)
    added = network_services.nic_create(actor=demo.bob, vm=vm, network=lab)
    wait_for(lambda: nic(vm, "nic0").phase == NicPhase.ATTACHED, message="nic0 not attached")
    assert ("network", added.mac) in domain_interfaces(host, vm)
    assert host_network(host, lab).isActive()

    vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), message="vm stays")
    assert not NetworkInterface.objects.filter(pk=added.pk).exists()
    network_services.network_delete(actor=demo.alice, network=lab)
    wait_for(lambda: not Network.objects.filter(pk=lab.pk).exists(), message="lab stays")


@pytest.mark.libvirt_test_driver
def test_tenants_with_the_same_range_are_placed_on_different_hosts(demo, make_host, tiny_image):
    """One host routes a range to one bridge: another tenant's VM on an overlapping
    network goes to another host, and gets no interface on one there."""
    first, second = make_host("node-a"), make_host("node-b")
    make(demo, name="lab", cidr="10.1.0.0/24")
    make(demo, name="lab", cidr="10.1.0.0/24", tenant=demo.globex, actor=demo.dave)
    mine = vm_on(demo, "web1", ["lab"])
    theirs = vm_services.vm_create(
        actor=demo.dave,
        tenant=demo.globex,
        name="web1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=["lab"],
    )
    assert {mine.host_id, theirs.host_id} == {first.pk, second.pk}

    plain = vm_services.vm_create(
        actor=demo.dave, tenant=demo.globex, name="web2", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=plain.pk).update(host=mine.host)
    plain.refresh_from_db()
    with pytest.raises(Conflict) as clash:
        network_services.nic_create(actor=demo.dave, vm=plain, network="lab")
    assert "overlaps a network of another tenant" in clash.value.message
    assert not NetworkInterface.objects.filter(vm=plain).exists()


@pytest.mark.libvirt_test_driver
def test_an_interface_removed_while_it_is_hot_added_goes(
    demo, make_host, tiny_image, celery_worker
):
    """Bob removes nic1 while its attach is on its way. The attach ended after the
    removal and wrote Attached over Detaching; the removal's task then took nic1 for
    one to attach, and it stayed in the VM. The removal stands now."""
    from django.core.cache import cache

    from compute.tasks import networks as network_tasks
    from compute.tasks.libvirt import vm_lock

    host = make_host()
    vm = vm_on(demo, "web1", ["default"])
    make(demo, name="lab", cidr="192.168.50.0/24")
    vm = wait_phase(vm, Phase.RUNNING)
    wait_for(lambda: cache.get(f"isotope:vm-lock:{vm.pk}") is None, message="web1 stays busy")
    with vm_lock(vm.pk):  # the worker's tasks on web1 wait (and retry)
        added = network_services.nic_create(actor=demo.bob, vm=vm, network="lab")
        acted = network_tasks._load(added.pk)  # the attach's task has read it: Pending
        network_services.nic_delete(actor=demo.bob, nic=nic(vm, "nic1"))
        network_tasks._converge(acted)  # the attach ends after the removal was asked
        assert ("network", added.mac) in domain_interfaces(host, vm)
        assert nic(vm, "nic1").phase == NicPhase.DETACHING
    wait_for(
        lambda: not NetworkInterface.objects.filter(pk=added.pk).exists(), message="nic1 stays"
    )
    assert ("network", added.mac) not in domain_interfaces(host, vm)
