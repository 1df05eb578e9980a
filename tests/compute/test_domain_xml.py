"""The product's domain definition (compute/backends/libvirt/xml.py): what a TCG guest's
kernel is told, and the console port."""

from __future__ import annotations

import pytest

from compute.backends.base import DomainSpec
from compute.backends.libvirt import xml

pytestmark = pytest.mark.unit


def spec() -> DomainSpec:
    return DomainSpec(
        name="isotope-x",
        vcpus=1,
        memory_mib=256,
        tenant="acme",
        vm_name="web",
        vm_uid="0a7e1c3e-7b4c-4d8e-9c51-2f3a1b2c3d4e",
        kernel="/k",
        initrd="/i",
        cmdline="console=ttyS0",
    )


def test_a_tcg_guest_kernel_gets_the_host_tsc_rate_and_skips_the_timer_check():
    def cmdline(domain_type: str, **kwargs) -> str:
        text = xml.domain_xml(
            spec(), domain_type=domain_type, disk_path=None, serial_log=None, **kwargs
        )
        return text.split("<cmdline>")[1].split("</cmdline>")[0]

    assert cmdline("qemu", tsc_khz=2596134) == (
        "console=ttyS0 isotope.hostname=web no_timer_check tsc_early_khz=2596134"
    )
    assert cmdline("qemu") == "console=ttyS0 isotope.hostname=web no_timer_check"
    assert cmdline("kvm", tsc_khz=2596134) == "console=ttyS0 isotope.hostname=web"


def test_the_host_tsc_rate_is_read_from_libvirts_capabilities():
    caps = (
        "<capabilities><host><cpu><arch>x86_64</arch>"
        "<counter name='tsc' frequency='2596134000' scaling='no'/></cpu></host></capabilities>"
    )
    assert xml.host_tsc_khz(caps) == 2596134
    assert xml.host_tsc_khz("<capabilities><host><cpu/></host></capabilities>") is None


def test_the_console_port_is_explicit_when_given_and_can_be_moved():
    auto = xml.domain_xml(spec(), domain_type="qemu", disk_path=None, serial_log=None)
    assert '<graphics type="vnc" listen="127.0.0.1" port="-1" autoport="yes">' in auto
    fixed = xml.domain_xml(
        spec(), domain_type="qemu", disk_path=None, serial_log=None, vnc_port=6401
    )
    assert '<graphics type="vnc" listen="127.0.0.1" port="6401" autoport="no">' in fixed
    moved = xml.with_vnc_port(fixed, 6502)
    assert 'port="6502" autoport="no"' in moved
    assert xml.owner_uid(moved) == spec().vm_uid  # the rest of the definition is kept


def test_a_domain_with_nics_has_virtio_interfaces_on_its_networks_and_no_user_mode_one():
    import dataclasses

    from compute.backends.base import NicSpec

    nics = (NicSpec(network="isonet-a", mac="52:54:00:00:00:01"),)
    with_nics = xml.domain_xml(
        dataclasses.replace(spec(), nics=nics), domain_type="qemu", disk_path=None, serial_log=None
    )
    assert xml.network_interfaces(with_nics) == list(nics)
    assert 'type="user"' not in with_nics and '<model type="virtio"' in with_nics
    plain = xml.domain_xml(spec(), domain_type="qemu", disk_path=None, serial_log=None)
    assert '<interface type="user">' in plain and xml.network_interfaces(plain) == []
    added = xml.with_interface(plain, add=NicSpec(network="isonet-b", mac="52:54:00:00:00:02"))
    assert [n.mac for n in xml.network_interfaces(added)] == ["52:54:00:00:00:02"]
    assert xml.network_interfaces(xml.with_interface(added, remove="52:54:00:00:00:02")) == []


def test_a_network_definition_has_its_bridge_nat_or_not_and_fixed_addresses():
    from compute.backends.base import NetworkSpec

    spec_ = NetworkSpec(
        name="isonet-a",
        bridge="isob0123456789",
        gateway="10.0.0.1",
        prefix=24,
        dhcp_start="10.0.0.2",
        dhcp_end="10.0.0.254",
        nat=True,
        hosts=(("52:54:00:00:00:01", "10.0.0.10"),),
    )
    text = xml.network_xml(spec_)
    assert '<forward mode="nat" />' in text
    assert xml.network_bridge(text) == "isob0123456789"
    assert xml.dhcp_hosts(text) == {("52:54:00:00:00:01", "10.0.0.10")}
    isolated = xml.network_xml(NetworkSpec(**{**spec_.__dict__, "nat": False, "hosts": ()}))
    assert "<forward" not in isolated and xml.dhcp_hosts(isolated) == set()
