"""VMs as real QEMU guests on libvirt node1: boot, stop, start, delete, and a worker
killed mid-provisioning (qemu tier)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import libvirt
import pytest
from django.db import connection

from compute.backends.libvirt.backend import SERIAL_DIR, shared_connection
from compute.choices import ImageKind, Phase
from compute.models import Host, Image, VirtualMachine, Volume
from compute.services import reconcile
from compute.services import vms as vm_services
from compute.services.hosts import host_check
from monitoring.models import Event
from tenants.models import Quota, Reservation
from tests.compute.services.test_vm_lifecycle import wait_phase, wait_ready
from tests.conftest import GUEST_BOOT_TIMEOUT, require, wait_for
from tools.infra import read_state

pytestmark = pytest.mark.qemu
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def node1(db):
    state = read_state("libvirt")
    image = read_state("image")
    require(state.get("ok"), f"libvirt nodes: {state.get('reason')}")
    require(image.get("ok"), f"tiny guest image: {image.get('reason')}")
    host = host_check(Host.objects.create(name="node1", uri="qemu:///system"))
    assert host.reachable, host.message
    Image.objects.create(
        name="tiny",
        kind=ImageKind.KERNEL,
        kernel_path=image["kernel"],
        initrd_path=image["initrd"],
        min_memory_mib=128,
        ready_banner="ISOTOPE-GUEST-BOOTED",
    )
    yield host
    # Remove only this test's guests: other test runs may share node1.
    ours = {vm.domain_name for vm in VirtualMachine.objects.select_related("tenant")}
    conn = shared_connection(host.uri)
    for domain in conn.listAllDomains():
        if domain.name() in ours:
            try:
                if domain.isActive():
                    domain.destroy()
            except libvirt.libvirtError:
                # A guest the test stopped can finish stopping between the two calls
                # ("domain is not running"); one still running is a real failure.
                if domain.isActive():
                    raise
            domain.undefine()


def vm_name() -> str:
    return f"qt-{secrets.token_hex(3)}"


def serial(vm) -> str:
    path = Path(SERIAL_DIR) / f"{vm.domain_name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_a_tiny_guest_boots_stops_starts_and_is_deleted_without_leftovers(
    demo, node1, celery_worker
):
    name = vm_name()
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    vm = wait_ready(vm, timeout=GUEST_BOOT_TIMEOUT)
    assert vm.vnc_port and vm.vnc_port >= 5900
    assert f"ISOTOPE-GUEST-BOOTED hostname={name}" in serial(vm)

    vm_services.vm_action(actor=demo.bob, vm=vm, action="stop")
    seen = set()
    wait_for(
        lambda: seen.add(VirtualMachine.objects.get(pk=vm.pk).phase) or Phase.STOPPED in seen,
        60,
        interval=0.02,
        message="the guest never stopped",
    )
    assert Phase.RUNNING not in seen, f"phase flickered back to Running while stopping: {seen}"
    vm.refresh_from_db()
    assert vm.vnc_port is None
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_phase(vm, Phase.RUNNING, timeout=60)

    conn = shared_connection(node1.uri)
    domain = conn.lookupByName(vm.domain_name)
    assert domain.isActive()
    # Its disk is its root volume, in node1's volume pool.
    root = Volume.objects.get(vm=vm, device="vda")
    pool = conn.storagePoolLookupByName("isotope-volumes")
    pool.refresh(0)
    assert root.backend_name in pool.listVolumes()

    vm_services.vm_delete(actor=demo.bob, vm=vm)
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 60)
    assert vm.domain_name not in [d.name() for d in conn.listAllDomains()]
    pool.refresh(0)
    assert root.backend_name not in pool.listVolumes()
    assert not Volume.objects.filter(pk=root.pk).exists()
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_vms, quota.used_storage) == (0, 0)


def _worker(env_extra: dict) -> subprocess.Popen:
    url = urlsplit(os.environ["DATABASE_URL"])
    test_db = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(url._replace(path=f"/{test_db}")),
        "ISOTOPE_DEBUG": "1",
        **env_extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "libvirt,default"]
        + ["-P", "solo", "-c", "1", "-l", "info", "--without-heartbeat", "--without-gossip"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_provisioning_loses_nothing_and_doubles_nothing(
    demo, node1, settings
):
    settings.ISOTOPE_STUCK_SECONDS = 1
    first = _worker(
        {"ISOTOPE_FAILPOINTS": "provision.after_define=sleep:60", "ISOTOPE_VM_LOCK_SECONDS": "3"}
    )
    second = None
    try:
        name = vm_name()
        vm = vm_services.vm_create(
            actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
        )
        # The worker defined the domain and now sleeps at the failpoint: kill it there.
        wait_for(
            lambda: VirtualMachine.objects.filter(pk=vm.pk).exclude(backend_id="").exists(),
            60,
            message="the first worker never defined the domain",
        )
        _kill(first)
        conn = shared_connection(node1.uri)
        assert not conn.lookupByName(vm.domain_name).isActive()

        second = _worker({})
        # The killed worker's VM lock (3 s) must have expired in Redis before the repair:
        # wait for that, not for a fixed time that a busy machine can outrun.
        wait_for(
            lambda: not reconcile._locked(vm), 30, 0.1, message="the killed worker's lock stayed"
        )
        vm.refresh_from_db()
        assert vm.phase == Phase.PROVISIONING
        counts = reconcile.reconcile_host(node1)
        assert counts["redriven"] == 1
        vm = wait_phase(vm, Phase.RUNNING, timeout=60)

        domains = [d.name() for d in conn.listAllDomains() if d.name() == vm.domain_name]
        assert domains == [vm.domain_name]
        assert conn.lookupByName(vm.domain_name).isActive()
        live = Reservation.objects.filter(ref=vm.quota_ref, released__isnull=True)
        assert live.count() == 1
        assert Quota.objects.get(tenant=demo.acme).used_vms == 1
        assert Event.objects.filter(name=name, reason="Scheduled").count() == 1
    finally:
        _kill(first)
        if second is not None:
            _kill(second)


def test_ready_follows_the_guest_not_the_domain_and_resets_on_reboot_and_stop(
    demo, node1, celery_worker, api
):
    name = vm_name()
    banner = f"ISOTOPE-GUEST-BOOTED hostname={name}"
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
    )
    seen: list[tuple] = []

    def ready_seen() -> bool:
        row = (
            VirtualMachine.objects.filter(pk=vm.pk)
            .values_list("phase", "ready", "ready_reason")
            .first()
        )
        if not seen or seen[-1] != row:
            seen.append(row)
        return row[1] == "True"

    wait_for(ready_seen, 120, interval=0.02, message=f"never Ready: {seen}")
    # The domain ran before the guest was up: Running was reported not Ready first.
    assert (Phase.RUNNING, "False", "GuestBooting") in seen, seen
    assert seen[-1] == (Phase.RUNNING, "True", "GuestBooted"), seen
    vm = VirtualMachine.objects.select_related("tenant", "host", "image").get(pk=vm.pk)
    assert banner in serial(vm)
    assert vm.ready_changed > vm.phase_changed
    event = Event.objects.get(kind="vm", name=name, reason="Ready")
    assert "after Running" in event.message
    status = api(demo.carol).get(f"/api/v1/tenants/acme/virtualmachines/{name}/").json()["status"]
    assert status["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "GuestBooted",
            "message": "The guest printed ISOTOPE-GUEST-BOOTED on its serial console.",
            "lastTransitionTime": vm.ready_changed.isoformat().replace("+00:00", "Z"),
        }
    ]

    # A reboot: not Ready until the guest has booted again (its banner a second time).
    printed = serial(vm).count(banner)
    seen.clear()
    vm_services.vm_action(actor=demo.bob, vm=vm, action="reboot")
    wait_for(lambda: not ready_seen(), 30, interval=0.02, message=f"Ready never reset: {seen}")
    wait_for(ready_seen, 120, interval=0.02, message=f"not Ready after the reboot: {seen}")
    assert serial(vm).count(banner) > printed
    assert (Phase.RUNNING, "False", "Rebooting") in seen or any(
        r[1] == "False" and r[0] == Phase.RUNNING for r in seen
    ), seen

    # A stop: not Ready, the phase says why.
    vm_services.vm_action(actor=demo.bob, vm=vm, action="stop")
    vm = wait_phase(vm, Phase.STOPPED, timeout=60)
    assert (vm.ready, vm.ready_reason) == ("False", Phase.STOPPED)
