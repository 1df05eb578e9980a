"""Console (VNC) ports on real QEMU guests (qemu tier): each host hands out ports from
its own range, a port QEMU finds taken is skipped by starting again on the next one,
and a failure reads as a plain reason for tenants while platform staff see QEMU's words
(in the VM record and the API)."""

from __future__ import annotations

import secrets
import socket
from contextlib import contextmanager

import libvirt
import pytest

from compute.backends.libvirt.backend import CONSOLE_PORT_REASON, LibvirtBackend
from compute.choices import Phase
from compute.models import Host, Image, VirtualMachine
from compute.services import vms as vm_services
from compute.tasks.libvirt import RETRY
from monitoring.models import Event
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.test_qemu_vms import node1  # noqa: F401
from tests.conftest import wait_for

pytestmark = pytest.mark.qemu
# QEMU's own words when it cannot listen on the port it was given.
QEMU_PORT_ERROR = ("Failed to find an available port", "Address already in use")


@contextmanager
def taken_port(*, free_after: int = 0):
    """A loopback port that is bound but not listening (as in the moment between another
    process's bind and listen): connecting to it is refused, yet QEMU cannot bind it.
    With ``free_after``, that many ports after it are free."""
    for _ in range(50):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        probes = []
        try:
            for offset in range(1, free_after + 1):
                probe = socket.socket()
                probe.bind(("127.0.0.1", port + offset))
                probes.append(probe)
        except OSError:
            holder.close()
            continue
        finally:
            for probe in probes:
                probe.close()
        try:
            yield port
        finally:
            holder.close()
        return
    pytest.fail("no bindable run of loopback ports found")


def create(demo, name: str) -> VirtualMachine:
    return vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=0,
    )


@pytest.mark.usefixtures("node1", "celery_worker")
def test_a_guest_starts_on_the_next_port_when_qemu_finds_its_port_taken(demo):
    with taken_port(free_after=1) as port:
        Host.objects.filter(name="node1").update(vnc_port_min=port, vnc_port_max=port + 1)
        vm = wait_phase(create(demo, f"cp-{secrets.token_hex(3)}"), Phase.RUNNING, timeout=90)
        assert vm.vnc_port == port + 1
        assert vm.message == "" and vm.detail == ""
        assert not Event.objects.filter(name=vm.name, type="Warning").exists()


@pytest.mark.usefixtures("node1", "celery_worker")
def test_no_free_console_port_fails_the_vm_plainly_and_staff_see_qemus_words(demo, api):
    with taken_port() as port:
        Host.objects.filter(name="node1").update(vnc_port_min=port, vnc_port_max=port)
        vm = wait_phase(create(demo, f"cp-{secrets.token_hex(3)}"), Phase.FAILED, timeout=90)
    assert vm.message == f"{CONSOLE_PORT_REASON}."
    assert any(words in vm.detail for words in QEMU_PORT_ERROR), vm.detail
    assert str(port) in vm.detail
    events = Event.objects.filter(name=vm.name)
    assert not any(w in e.message for e in events for w in (*QEMU_PORT_ERROR, "qemu", "vnc"))

    url = f"/api/v1/tenants/acme/virtualmachines/{vm.name}/"
    tenant_view = api(demo.bob).get(url).json()["status"]
    assert tenant_view["message"] == f"{CONSOLE_PORT_REASON}."
    assert "detail" not in tenant_view and "host" not in tenant_view
    staff_view = api(demo.admin).get(url).json()["status"]
    assert staff_view["detail"] == vm.detail


@pytest.mark.usefixtures("node1")
def test_a_qemu_that_exits_without_words_is_tried_again_on_its_port_to_learn_why():
    """libvirt may report a QEMU that died during its start as only "qemu unexpectedly
    closed the monitor": it read QEMU's log before virtlogd had written QEMU's last
    words (a migration whose only target port was taken read "The hosts could not
    complete the migration." that way once). The same port is tried once more, so a
    taken port still reads as one and the next port is tried; a second wordless exit
    is raised as it is."""
    wordless = "internal error: qemu unexpectedly closed the monitor"
    clash = f"internal error: {QEMU_PORT_ERROR[0]}: {QEMU_PORT_ERROR[1]}"
    with taken_port(free_after=1) as port:
        uri = Host.objects.get(name="node1").uri
        backend = LibvirtBackend(uri=uri, vnc_ports=(port, port + 1))
        tried = []

        def attempt(given: int) -> None:
            tried.append(given)
            if len(tried) == 1:
                raise libvirt.libvirtError(wordless)
            if given == port:
                raise libvirt.libvirtError(clash)

        backend._on_free_port("cp-words", attempt)
        assert tried == [port, port, port + 1]

        def always_wordless(given: int) -> None:
            tried.append(given)
            raise libvirt.libvirtError(wordless)

        tried.clear()
        with pytest.raises(libvirt.libvirtError, match="closed the monitor$"):
            backend._on_free_port("cp-words", always_wordless)
        assert tried == [port, port]


@pytest.mark.usefixtures("node1", "celery_worker")
def test_a_missing_kernel_reads_plainly_for_tenants(demo, monkeypatch):
    # libvirt reports it as a system error, which the task retries: once is enough here.
    monkeypatch.setitem(RETRY, "max_retries", 1)
    Image.objects.filter(name="tiny").update(kernel_path="/var/lib/isotope/images/gone/vmlinuz")
    vm = wait_phase(create(demo, f"cp-{secrets.token_hex(3)}"), Phase.FAILED, timeout=90)
    assert vm.message == "The host could not start the VM (gave up after 2 attempts)."
    assert "/var/lib/isotope/images/gone/vmlinuz" in vm.detail
    assert vm.domain_name in vm.detail
    wait_for(lambda: Event.objects.filter(name=vm.name, reason="Failed").exists(), 10)
    for event in Event.objects.filter(name=vm.name):
        assert "/var/lib" not in event.message and vm.domain_name not in event.message
