"""Live migration of real QEMU guests between libvirt node1 and node2 (migration tier).

Every guest is a diskless tiny guest (256 MiB) named ``mg-<hex>``; only this test's
domains are removed afterwards, on both nodes (other test runs share node1).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from django.db.models import Sum

from compute.backends import backend_for_host
from compute.backends.libvirt.backend import SERIAL_DIR, shared_connection
from compute.choices import ImageKind, MigrationPhase, Phase
from compute.models import Host, Image, Migration, MigrationPolicy, VirtualMachine
from compute.services import migrations as migration_services
from compute.services import vms as vm_services
from compute.services.hosts import host_check
from compute.tasks.migration import PAUSED_NOTE
from monitoring.groups import tenant_group
from monitoring.models import Event
from tests.compute.services.test_vm_lifecycle import wait_ready
from tests.conftest import GUEST_BOOT_TIMEOUT, require, wait_for
from tools.infra import read_state
from tools.infra.image import MEMORY_CHURN, PANIC_TEXT, type_keys
from tools.infra.libvirt import NODE_TUNNELS, NODE_VNC_PORTS

pytestmark = [pytest.mark.qemu, pytest.mark.migration]
BANNER = "ISOTOPE-GUEST-BOOTED"


# --- Fixtures ------------------------------------------------------------------------------
@pytest.fixture
def nodes(transactional_db):
    """node1 and node2 registered from the local infrastructure's state, the tiny image."""
    state = read_state("libvirt")
    image = read_state("image")
    require(state.get("ok"), f"libvirt nodes: {state.get('reason')}")
    require(image.get("ok"), f"tiny guest image: {image.get('reason')}")
    uris = {n["name"]: n["uri"] for n in state["nodes"]}
    hosts = {}
    for name in ("node1", "node2"):
        # Console ports apart, as seed_local_infrastructure registers them.
        low, high = NODE_VNC_PORTS[name]
        address, port = NODE_TUNNELS[name]
        host = Host.objects.create(
            name=name,
            uri=uris[name],
            vnc_port_min=low,
            vnc_port_max=high,
            tunnel_address=address,
            tunnel_port=port,
        )
        hosts[name] = host_check(host)
        assert hosts[name].reachable, hosts[name].message
        assert hosts[name].can("live_migration")
    Image.objects.create(
        name="tiny",
        kind=ImageKind.KERNEL,
        kernel_path=image["kernel"],
        initrd_path=image["initrd"],
        min_memory_mib=128,
        ready_banner="ISOTOPE-GUEST-BOOTED",
    )
    yield hosts
    ours = {vm.domain_name for vm in VirtualMachine.objects.select_related("tenant")}
    for host in hosts.values():
        conn = shared_connection(host.uri)
        for domain in conn.listAllDomains():
            if domain.name() in ours:
                try:
                    if domain.isActive():
                        domain.destroy()
                    if domain.isPersistent():
                        domain.undefine()
                except Exception:  # noqa: BLE001 - best effort, the next name differs
                    pass
    from tests.compute.test_qemu_networks import filters_forget

    for host in hosts.values():  # unbound now that the guests are gone
        filters_forget(shared_connection(host.uri))
    for name in ours:
        Path(SERIAL_DIR, f"{name}.log").unlink(missing_ok=True)


@pytest.fixture
def worker(transactional_db):
    """A Celery worker with room for parallel migrations and the provisioning beside."""
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    app.conf.task_always_eager = False
    with start_worker(
        app,
        pool="threads",
        concurrency=6,
        perform_ping_check=False,
        shutdown_timeout=30,
        queues=["default", "libvirt", "monitoring"],
    ) as running:
        yield running


def policy(**fields) -> MigrationPolicy:
    cluster = migration_services.policy_cluster()
    for key, value in fields.items():
        setattr(cluster, key, value)
    cluster.save()
    return cluster


def serial(vm) -> str:
    path = Path(SERIAL_DIR) / f"{vm.domain_name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def boot(demo, count: int = 1) -> list[VirtualMachine]:
    """``count`` running tiny guests on node1 (the scheduler's pick is pinned by
    putting node2 in maintenance meanwhile), each Ready and at its shell prompt."""
    Host.objects.filter(name="node2").update(maintenance=True)
    vms = [
        vm_services.vm_create(
            actor=demo.alice,
            tenant=demo.acme,
            name=f"mg-{secrets.token_hex(3)}",
            image="tiny",
            vcpus=1,
            memory_mib=256,
            disk_gib=0,
        )
        for _ in range(count)
    ]
    Host.objects.filter(name="node2").update(maintenance=False)
    ready = [wait_ready(vm, timeout=GUEST_BOOT_TIMEOUT) for vm in vms]
    # Ready follows the boot banner, which the kernel log may echo on ttyS0 a moment later;
    # tests count banners to tell a reboot, so wait for the prompt, printed after both.
    for vm in ready:
        wait_for(
            lambda vm=vm: f"{vm.name}:/# " in serial(vm),
            GUEST_BOOT_TIMEOUT,
            message=f"{vm.name}: no shell prompt on ttyS0",
        )
    return ready


def phase(vm) -> str:
    return VirtualMachine.objects.filter(pk=vm.pk).values_list("phase", flat=True).first()


def finished(migration, timeout: float = 120) -> Migration:
    def done():
        fresh = Migration.objects.get(pk=migration.pk)
        return fresh if not fresh.active else None

    return wait_for(done, timeout, interval=0.1, message="the migration never ended")


def active_on(host: Host, vm) -> bool:
    conn = shared_connection(host.uri)
    try:
        return bool(conn.lookupByName(vm.domain_name).isActive())
    except Exception:  # noqa: BLE001 - libvirtError: not there
        return False


class LiveTap:
    """Listens on the tenant's live stream through the channel layer, as the
    websocket consumer does, and keeps (arrival time, message) of every message."""

    def __init__(self, slug: str):
        self.group = tenant_group(slug)
        self.messages: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    async def _listen(self):
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(self.group, channel)
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    message = await asyncio.wait_for(layer.receive(channel), 0.5)
                except TimeoutError:
                    continue
                self.messages.append((time.monotonic(), message["message"]))
        finally:
            await layer.group_discard(self.group, channel)

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def progress(self, uid) -> list[tuple[float, dict]]:
        return [
            (at, m["data"]["state"])
            for at, m in self.messages
            if m["type"] == "resource"
            and m["data"]["kind"] == "migration"
            and m["data"]["name"] == str(uid)
        ]


# --- Tests -----------------------------------------------------------------------------------
def test_a_running_guest_migrates_to_node2_and_back_without_rebooting_with_live_progress(
    demo, nodes, worker
):
    policy(bandwidth_mib=32)
    (vm,) = boot(demo)
    assert vm.host.name == "node1"
    booted = serial(vm).count(BANNER)  # once (twice when the kernel log shares ttyS0)
    assert booted in (1, 2)
    ready_since = vm.ready_changed
    timings = []
    for source, target in (("node1", "node2"), ("node2", "node1")):
        paused = not backend_for_host(vm.host).migration_is_live(vm.domain_name)
        with LiveTap("acme") as tap:
            started = time.monotonic()
            migration = migration_services.migration_request(actor=demo.alice, vm=vm)
            moving = vm
            wait_for(lambda: phase(moving) == Phase.MIGRATING, 30, interval=0.02)  # noqa: B023
            migration = finished(migration)
            timings.append(time.monotonic() - started)
            # The last messages may still be in flight: wait for the final one.
            final = migration.phase
            wait_for(
                lambda: any(s["phase"] == final for _, s in tap.progress(migration.uid)),  # noqa: B023
                30,
                message=f"the {final} progress message never arrived",
            )
        assert migration.phase == MigrationPhase.SUCCEEDED, migration.reason
        vm = VirtualMachine.objects.select_related("tenant", "host").get(pk=vm.pk)
        assert vm.phase == Phase.RUNNING
        # The guest never stopped: it stayed Ready throughout, since its boot.
        assert (vm.ready, vm.ready_changed) == ("True", ready_since), vm.ready_reason
        assert vm.host.name == target and migration.target.name == target
        assert active_on(nodes[target], vm) and not active_on(nodes[source], vm)
        # The console moved to a port of the target's own range (node1 and node2 share
        # the loopback: ports from one pool raced, "Address already in use").
        low, high = NODE_VNC_PORTS[target]
        assert vm.vnc_port and low <= vm.vnc_port <= high, (target, vm.vnc_port)

        states = tap.progress(migration.uid)
        running = [(at, s) for at, s in states if s["phase"] == "Running" and s["memoryTotal"]]
        if paused:  # a TCG guest on QEMU < 9.0 moves paused, and the panel says so
            assert {s["reason"] for _, s in running} == {PAUSED_NOTE}, running[-1]
        assert len(running) >= 3, f"too few progress messages: {states}"
        span = running[-1][0] - running[0][0]
        rate = (len(running) - 1) / span
        processed = [s["memoryProcessed"] for _, s in running]
        assert processed == sorted(processed), f"memory processed went backwards: {processed}"
        assert rate >= 2, f"{rate:.1f} progress messages/s"
        assert states[-1][1]["phase"] == "Succeeded" and states[-1][1]["percent"] == 100
        print(
            f"{source}->{target}: {timings[-1]:.1f} s, {len(running)} progress messages "
            f"at {rate:.1f}/s, {processed[-1] >> 20} MiB processed, "
            f"downtime {migration.downtime_ms} ms"
        )
    # Repeated events fold (count): two Migrating and two Migrated, no restarts.
    counts = dict(
        Event.objects.filter(kind="vm", name=vm.name).values_list("reason").annotate(n=Sum("count"))
    )
    assert counts["Migrating"] == 2 and counts["Migrated"] == 2, counts
    if paused:  # the VM's events say so too, not only the panel
        assert counts["MigratingPaused"] == 2, counts
    log = serial(vm)
    assert log.count(BANNER) == booted, f"the guest rebooted: {log[-600:]!r}"


def answers(vm, token: str, timeout: float = 60) -> bool:
    """Type ``echo TOKEN > /dev/ttyS0`` on the guest's VGA console (again every 10 s)
    until TOKEN reaches its serial log: the guest runs and its shell answers."""
    domain = shared_connection(vm.host.uri).lookupByName(vm.domain_name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        type_keys(domain, f"echo {token} > /dev/ttyS0\n")
        until = min(deadline, time.monotonic() + 10)
        while time.monotonic() < until:
            if token in serial(vm):
                return True
            time.sleep(0.1)
    return False


def test_a_just_booted_guest_that_writes_memory_survives_six_migrations(demo, nodes, worker):
    """Regression: the tiny guest's kernel panicked right after a migration to node2
    ("Attempted to kill the idle task"). QEMU before 9.0 loses a TCG guest's memory
    writes during a *live* migration, so its target ran on stale pages; such guests now
    move paused. A guest right after its boot, kept writing 1 MiB of page cache in a loop,
    crashed in 2 of 10 live migrations here (bench/migration_soak.py)."""
    policy(bandwidth_mib=64)
    (vm,) = boot(demo)
    # The VGA console's shell starts after the serial one: keys typed before it reads them
    # can leave half a loop pending, which swallows every later command.
    assert answers(vm, f"tty1up{secrets.token_hex(3)}"), serial(vm)[-1500:]
    type_keys(shared_connection(vm.host.uri).lookupByName(vm.domain_name), MEMORY_CHURN)
    # The loop is running in the background once the shell answers again; keys still in
    # the keyboard queue when a migration starts are not this test's subject.
    assert answers(vm, f"churning{secrets.token_hex(3)}"), serial(vm)[-1500:]
    for n in range(6):
        migration = finished(migration_services.migration_request(actor=demo.alice, vm=vm))
        assert migration.phase == MigrationPhase.SUCCEEDED, (n, migration.reason)
        vm = VirtualMachine.objects.select_related("tenant", "host").get(pk=vm.pk)
        assert vm.host.name == ("node2", "node1")[n % 2] and vm.phase == Phase.RUNNING
        log = serial(vm)
        panic = re.search(f"{PANIC_TEXT}|CHURN-MISMATCH", log)
        assert not panic, f"after migration {n + 1}: {log[panic.start() - 1500 :][:3000]}"
        assert answers(vm, f"alive{n}x{secrets.token_hex(3)}"), (n, serial(vm)[-1500:])
    assert len(re.findall(rf"(?m)^{BANNER} ", serial(vm))) == 1, "the guest rebooted"


def test_cancel_mid_transfer_leaves_the_guest_running_on_the_source(demo, nodes, worker):
    policy(bandwidth_mib=1)
    (vm,) = boot(demo)
    migration = migration_services.migration_request(actor=demo.alice, vm=vm)
    wait_for(
        lambda: Migration.objects.filter(pk=migration.pk, memory_processed__gt=0).exists(),
        30,
        message="the migration never transferred anything",
    )
    migration_services.migration_cancel(actor=demo.alice, migration=migration)
    migration = finished(migration, 60)
    assert migration.phase == MigrationPhase.CANCELLED, migration.reason
    assert "alice" in migration.reason
    vm.refresh_from_db()
    assert vm.phase == Phase.RUNNING and vm.host.name == "node1" and vm.message == ""
    assert active_on(nodes["node1"], vm) and not active_on(nodes["node2"], vm)


def test_a_migration_past_its_completion_timeout_is_aborted_with_the_reason(demo, nodes, worker):
    # 256 MiB × 8 s/GiB = 2 s, at 1 MiB/s it cannot finish in time.
    policy(bandwidth_mib=1, completion_timeout_per_gib=8)
    (vm,) = boot(demo)
    migration = finished(migration_services.migration_request(actor=demo.alice, vm=vm), 60)
    assert migration.phase == MigrationPhase.FAILED
    assert migration.reason.startswith("Completion timeout: not finished after 2 s")
    vm.refresh_from_db()
    assert vm.phase == Phase.RUNNING and vm.host.name == "node1"
    assert "Completion timeout" in vm.message
    assert active_on(nodes["node1"], vm) and not active_on(nodes["node2"], vm)


def _incoming_qemu(vm) -> int:
    """The pid of the destination QEMU of ``vm``'s migration (started with -incoming)."""
    out = subprocess.run(["pgrep", "-f", f"guest={vm.domain_name}"], capture_output=True, text=True)
    for pid in out.stdout.split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"-incoming" in cmdline:
            return int(pid)
    return 0


def test_a_stalled_migration_is_aborted_by_the_progress_timeout(demo, nodes, worker):
    policy(bandwidth_mib=1, progress_timeout=2)
    (vm,) = boot(demo)
    migration = migration_services.migration_request(actor=demo.alice, vm=vm)
    pid = wait_for(lambda: _incoming_qemu(vm), 30, message="no destination QEMU")
    wait_for(lambda: Migration.objects.filter(pk=migration.pk, samples__gt=1).exists(), 30)
    # Freeze the destination: the sender's buffers fill and nothing moves any more.
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: "Progress timeout" in Migration.objects.get(pk=migration.pk).reason,
            30,
            message="no progress timeout",
        )
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    migration = finished(migration, 60)
    assert migration.phase == MigrationPhase.FAILED
    assert migration.reason == "Progress timeout: the remaining data did not shrink for 2 s."
    vm.refresh_from_db()
    assert vm.phase == Phase.RUNNING and vm.host.name == "node1"
    assert active_on(nodes["node1"], vm)


def test_a_third_migration_from_one_host_waits_for_a_free_outbound_slot(demo, nodes, worker):
    policy(bandwidth_mib=16, max_outbound=2)
    vms = boot(demo, 3)
    migrations = [migration_services.migration_request(actor=demo.alice, vm=vm) for vm in vms]

    def split():
        phases = {m.pk: Migration.objects.get(pk=m.pk) for m in migrations}
        running = [m for m in phases.values() if m.phase == MigrationPhase.RUNNING]
        waiting = [m for m in phases.values() if m.phase == MigrationPhase.PENDING]
        return (running, waiting) if len(running) == 2 and len(waiting) == 1 else None

    running, waiting = wait_for(split, 30, interval=0.05, message="not 2 running + 1 queued")
    assert waiting[0].reason == (
        "Queued: 2 migrations are leaving this VM's host (at most 2 at once)."
    )
    results = [finished(m) for m in migrations]
    assert [m.phase for m in results] == [MigrationPhase.SUCCEEDED] * 3
    last = Migration.objects.get(pk=waiting[0].pk)
    assert last.started >= min(Migration.objects.get(pk=m.pk).finished for m in running)
    assert set(VirtualMachine.objects.values_list("host__name", flat=True)) == {"node2"}


def test_draining_node1_moves_both_guests_to_node2_and_leaves_it_in_maintenance(
    demo, nodes, worker
):
    policy(bandwidth_mib=64)
    vms = boot(demo, 2)
    booted = {vm.pk: serial(vm).count(BANNER) for vm in vms}
    Host.objects.filter(name="node2").update(maintenance=True)  # the stopped one on node1
    stopped = vm_services.vm_create(
        actor=demo.alice,
        tenant=demo.acme,
        name=f"mg-{secrets.token_hex(3)}",
        image="tiny",
        vcpus=1,
        memory_mib=128,
        start=False,
    )
    Host.objects.filter(name="node2").update(maintenance=False)
    wait_for(lambda: phase(stopped) == Phase.STOPPED, 60)
    drain = migration_services.host_drain(actor=demo.admin, host=nodes["node1"])
    assert Host.objects.get(name="node1").maintenance
    assert drain.unmovable == [
        {
            "tenant": "acme",
            "vm": stopped.name,
            "reason": f"Only running VMs migrate live; {stopped.name} is Stopped.",
        }
    ]
    for migration in drain.migrations.all():
        assert finished(migration).phase == MigrationPhase.SUCCEEDED
    for vm in vms:
        vm.refresh_from_db()
        assert vm.host.name == "node2" and vm.phase == Phase.RUNNING
        assert active_on(nodes["node2"], vm)
        assert serial(vm).count(BANNER) == booted[vm.pk]


@pytest.mark.django_db(transaction=True)
def test_a_migration_whose_worker_is_killed_is_settled_and_the_guest_keeps_running(
    demo, nodes, settings
):
    """SIGKILL the worker in the middle of the transfer: the sweep notices the job has
    nobody running it once its lock expires, and settles it from where the guest is."""
    from compute.tasks.migration import migrations_sweep
    from tests.compute.test_qemu_vms import _kill, _worker

    settings.ISOTOPE_STUCK_SECONDS = 1
    first = _worker({"ISOTOPE_VM_LOCK_SECONDS": "3"})
    second = None
    try:
        (vm,) = boot(demo)
        booted = serial(vm).count(BANNER)  # once (twice when the kernel log shares ttyS0)
        # Slow enough to be caught mid-transfer; its own deadline is 10 s (40 s/GiB).
        policy(bandwidth_mib=1, completion_timeout_per_gib=40)
        migration = migration_services.migration_request(actor=demo.alice, vm=vm)
        wait_for(
            lambda: Migration.objects.get(pk=migration.pk).memory_processed > 0,
            30,
            message="the transfer never started",
        )
        _kill(first)
        second = _worker({})
        # The killed job's lock lasts its deadline (10 s) plus 3 s; the sweep waits it out.
        wait_for(lambda: migrations_sweep() == [migration.pk], 30, interval=0.5)
        done = finished(migration, 60)
        assert done.phase == MigrationPhase.FAILED
        assert "worker" in done.reason and "lost" in done.reason
        vm.refresh_from_db()
        assert vm.host == nodes["node1"]
        wait_for(lambda: phase(vm) == Phase.RUNNING, 30)
        assert active_on(nodes["node1"], vm) and not active_on(nodes["node2"], vm)
        assert serial(vm).count(BANNER) == booted, "the guest rebooted"
    finally:
        _kill(first)
        if second is not None:
            _kill(second)
