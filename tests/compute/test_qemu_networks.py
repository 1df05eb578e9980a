"""Networks on real libvirt (qemu tier, node1): the tenant network becomes a libvirt
network with its own bridge and dnsmasq on the VM's host, the guest's virtio NIC sits on
it with Isotope's MAC, a second NIC with a fixed address is hot-plugged into the running
guest (the guest's PCI bus shows it) and taken out again, and deleting the network
removes it from the host. Two guests on one network take DHCP leases on boot (the tiny
image's udhcpc), Isotope records them, and the guests ping each other and fetch each
other's busybox httpd page."""

from __future__ import annotations

import re
import secrets
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from compute.backends.libvirt.backend import SERIAL_DIR, shared_connection
from compute.choices import NicPhase, Phase
from compute.models import Image, Network, NetworkInterface, SecurityGroup, VirtualMachine
from compute.services import networks as network_services
from compute.services import vms as vm_services
from tests.compute.guest import Guest
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.test_qemu_vms import node1  # noqa: F401 - the fixture
from tests.conftest import GUEST_BOOT_TIMEOUT, require, wait_for

pytestmark = pytest.mark.qemu


def filters_forget(conn) -> None:
    """Undefine the security group and interface filters this test's rows made (one
    still bound to a guest stays: libvirt refuses to undefine it)."""
    filters = {g.filter_name for g in SecurityGroup.objects.all()}
    filters |= {n.filter_name for n in NetworkInterface.objects.all()}
    for found in conn.listAllNWFilters(0):
        if found.name() in filters:
            try:
                found.undefine()
            except libvirt.libvirtError:
                pass


@pytest.fixture
def networks_cleanup(node1):  # noqa: F811 - the fixture imported above
    """Remove this test's libvirt networks from node1 afterwards (others share it)."""
    yield
    conn = shared_connection(node1.uri)
    filters_forget(conn)
    ours = {n.backend_name for n in Network.objects.all()}
    for network in conn.listAllNetworks():
        if network.name() in ours:
            if network.isActive():
                network.destroy()
            network.undefine()


def live_macs(vm) -> list[str]:
    domain = shared_connection(vm.host.uri).lookupByName(vm.domain_name)
    root = ET.fromstring(domain.XMLDesc(0))
    return [
        i.find("mac").get("address")
        for i in root.iterfind("./devices/interface")
        if i.get("type") == "network"
    ]


def test_a_guest_gets_a_nic_on_a_real_libvirt_network_and_a_hot_plugged_second_one(
    demo,
    node1,  # noqa: F811
    networks_cleanup,
    celery_worker,
):
    name = f"qn-{secrets.token_hex(3)}"
    # A subnet of 10.200.0.0/16 unlikely to be routed here already (each run its own).
    third = secrets.randbelow(250) + 1
    lab = network_services.network_create(
        actor=demo.bob, tenant=demo.acme, name=name, cidr=f"10.200.{third}.0/24", kind="nat"
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
    made = conn.networkLookupByName(lab.backend_name)
    assert made.isActive() and made.bridgeName() == lab.bridge
    link = subprocess.run(
        ["ip", "-br", "addr", "show", lab.bridge], capture_output=True, text=True, check=False
    )
    assert f"10.200.{third}.1/24" in link.stdout, link
    first = NetworkInterface.objects.get(vm=vm, name="nic0")
    assert live_macs(vm) == [first.mac]

    guest = Guest(
        lambda: conn.lookupByName(vm.domain_name), Path(SERIAL_DIR) / f"{vm.domain_name}.log"
    )
    wait_for(lambda: f"ISOTOPE-GUEST-BOOTED hostname={name}" in guest.log(), 600)
    # virtio-net's PCI device ids (transitional, modern), counted on the guest's bus.
    probe = (
        "echo NICS=$(grep -lE '0x1000|0x1041' /sys/bus/pci/devices/*/device | wc -l) > /dev/ttyS0"
    )
    guest.until(probe, "NICS=1")

    second = network_services.nic_create(
        actor=demo.bob, vm=vm, network=name, fixed_ip=f"10.200.{third}.50"
    )
    wait_for(lambda: NetworkInterface.objects.get(pk=second.pk).phase == NicPhase.ATTACHED, 120)
    assert live_macs(vm) == [first.mac, second.mac]
    hosts = ET.fromstring(made.XMLDesc(0)).iterfind("./ip/dhcp/host")
    assert [(h.get("mac"), h.get("ip")) for h in hosts] == [(second.mac, f"10.200.{third}.50")]
    guest.until(probe, "NICS=2")  # the running guest's PCI bus has the hot-plugged NIC

    network_services.nic_delete(actor=demo.bob, nic=NetworkInterface.objects.get(pk=second.pk))
    wait_for(lambda: not NetworkInterface.objects.filter(pk=second.pk).exists(), 180)
    assert live_macs(vm) == [first.mac]

    vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 180)
    network_services.network_delete(actor=demo.alice, network=Network.objects.get(pk=lab.pk))
    wait_for(lambda: not Network.objects.filter(pk=lab.pk).exists(), 60)
    with pytest.raises(libvirt.libvirtError):
        conn.networkLookupByName(lab.backend_name)


def test_a_second_tenants_overlapping_network_is_refused_by_the_host_in_plain_words(
    demo,
    node1,  # noqa: F811
    networks_cleanup,
):
    from compute.backends import BackendError, backend_for_host

    cidr = f"10.202.{secrets.randbelow(250) + 1}.0/24"
    mine = network_services.network_create(actor=None, tenant=demo.acme, name="ov", cidr=cidr)
    theirs = network_services.network_create(actor=None, tenant=demo.globex, name="ov", cidr=cidr)
    backend = backend_for_host(node1)
    backend.network_ensure(network_services.network_spec(mine))
    backend.network_ensure(network_services.network_spec(mine))  # idempotent
    with pytest.raises(BackendError) as refused:
        backend.network_ensure(network_services.network_spec(theirs))
    assert str(refused.value) == (
        "Another network with an overlapping address range is active on this host."
    )
    assert "already in use" in refused.value.detail
    assert backend.network_delete(mine.backend_name) is True
    assert backend.network_delete(mine.backend_name) is False


@pytest.fixture
def networked_image(node1):  # noqa: F811 - the fixture imported above
    return use_networked_image()


def use_networked_image() -> dict:
    """Boot the tiny image of this checkout's builder (udhcpc on boot and on hot-plug,
    httpd): ``image.ensure()`` builds and installs it unless it is there already, without
    changing the shared infra state other test runs read."""
    from tools.infra import image

    try:
        built = image.ensure()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        require(False, f"tiny guest image with networking: {exc}")
    Image.objects.filter(name="tiny").update(
        kernel_path=built["kernel"], initrd_path=built["initrd"]
    )
    return built


def addresses_recorded(host, vms, nic: str, addresses: list[str], prefix: int) -> bool:
    """Isotope's reconciler pass has recorded each VM's lease on its interface ``nic``."""
    from compute.services.reconcile import reconcile_host

    reconcile_host(host)
    found = [NetworkInterface.objects.get(vm=vm, name=nic).addresses for vm in vms]
    return found == [[f"{a}/{prefix}"] for a in addresses]


def test_two_guests_get_leases_on_boot_and_on_a_hot_plugged_nic_shown_by_isotope_and_ping(
    demo,
    node1,  # noqa: F811
    networked_image,
    networks_cleanup,
    celery_worker,
):
    """The tiny guest's udhcpc takes a lease on boot; the reconciler's pass records it on
    the interface; the two guests reach each other (the default security group allows
    traffic within the group) and fetch each other's busybox httpd page. Then a NIC on a
    second network is hot-plugged into each running guest: the guest runs udhcpc on the
    new eth1 (busybox uevent), prints its address, Isotope shows it on the new interface,
    and the guests ping each other over the second network."""
    name = f"qp-{secrets.token_hex(2)}"
    third = secrets.randbelow(250) + 1
    network_services.network_create(
        actor=demo.bob, tenant=demo.acme, name=name, cidr=f"10.206.{third}.0/24"
    )
    vms = [
        vm_services.vm_create(
            actor=demo.bob,
            tenant=demo.acme,
            name=f"{name}-{index}",
            image="tiny",
            vcpus=1,
            memory_mib=256,
            networks=[name],
        )
        for index in range(2)
    ]
    vms = [wait_phase(vm, Phase.RUNNING, timeout=300) for vm in vms]
    conn = shared_connection(node1.uri)
    guests = [
        Guest(
            lambda vm=vm: conn.lookupByName(vm.domain_name),
            Path(SERIAL_DIR) / f"{vm.domain_name}.log",
        )
        for vm in vms
    ]
    pattern = re.compile(rf"ISOTOPE-GUEST-ADDRESS iface=eth0 ip=(10\.206\.{third}\.\d+)/24")
    addresses = [
        wait_for(lambda g=g: pattern.search(g.log()), GUEST_BOOT_TIMEOUT, 0.5)[1] for g in guests
    ]
    wait_for(
        lambda: addresses_recorded(node1, vms, "nic0", addresses, 24),
        120,
        2,
        message="Isotope never recorded the guests' leases",
    )

    first, second = guests
    first.until(f"ping -c 2 {addresses[1]} > /dev/ttyS0", "2 packets received")
    first.until(f"wget -q -O /dev/ttyS0 http://{addresses[1]}/", f"isotope-guest {vms[1].name}")
    second.until(f"wget -q -O /dev/ttyS0 http://{addresses[0]}/", f"isotope-guest {vms[0].name}")

    # A NIC on a second network, hot-plugged into each running guest.
    other = f"{name}-b"
    network_services.network_create(
        actor=demo.bob, tenant=demo.acme, name=other, cidr=f"10.207.{third}.0/25"
    )
    plugged = [network_services.nic_create(actor=demo.bob, vm=vm, network=other) for vm in vms]
    for nic in plugged:
        wait_for(
            lambda nic=nic: NetworkInterface.objects.get(pk=nic.pk).phase == NicPhase.ATTACHED,
            120,
            message="the second interface was never attached",
        )
    assert {nic.name for nic in plugged} == {"nic1"}
    pattern = re.compile(rf"ISOTOPE-GUEST-ADDRESS iface=eth1 ip=(10\.207\.{third}\.\d+)/25")
    later = [wait_for(lambda g=g: pattern.search(g.log()), 120, 0.5)[1] for g in guests]
    wait_for(
        lambda: addresses_recorded(node1, vms, "nic1", later, 25),
        120,
        2,
        message="Isotope never recorded the hot-plugged interfaces' leases",
    )
    second.until(f"ping -c 2 {later[0]} > /dev/ttyS0", "2 packets received")
    first.until(f"ping -c 2 {later[1]} > /dev/ttyS0", "2 packets received")

    for vm in vms:
        vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk__in=[v.pk for v in vms]).exists(), 180)
