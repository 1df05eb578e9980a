"""Snapshots and clones on a real QEMU guest on libvirt node1 (qemu tier): data written
in the guest is in the snapshot; after the volume is changed, a restore brings it back
and the guest reads it; a clone keeps the data after its source is deleted."""

from __future__ import annotations

import secrets
import time

import libvirt
import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase, SnapshotPhase, VolumePhase
from compute.models import Snapshot, Volume
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from tests.compute.services.test_vm_lifecycle import wait_phase, wait_ready
from tests.compute.services.test_volumes import wait_volume
from tests.compute.test_qemu_vms import node1  # noqa: F401 - the fixture
from tests.compute.test_qemu_volumes import guest_of, pool_cleanup  # noqa: F401
from tests.conftest import GUEST_BOOT_TIMEOUT, wait_for

pytestmark = pytest.mark.qemu
POOL = "isotope-volumes"


def _volume(host, name: str) -> libvirt.virStorageVol:
    pool = shared_connection(host.uri).storagePoolLookupByName(POOL)
    pool.refresh(0)
    return pool.storageVolLookupByName(name)


def read_head(host, name: str, size: int) -> bytes:
    """The first ``size`` bytes of a raw volume, read through libvirt's storage API."""
    conn = shared_connection(host.uri)
    stream = conn.newStream(0)
    _volume(host, name).download(stream, 0, size, 0)
    data = b""
    while len(data) < size:
        chunk = stream.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    stream.finish()
    return data


def write_head(host, name: str, data: bytes) -> None:
    conn = shared_connection(host.uri)
    stream = conn.newStream(0)
    _volume(host, name).upload(stream, 0, len(data), 0)
    stream.send(data)
    stream.finish()


def write_in_guest(guest, host, name: str, text: str, disk: str) -> None:
    """The guest writes ``text`` at the start of ``/dev/<disk>`` and syncs; done once the volume
    file on the host holds it (what the snapshot is then taken of)."""

    def arrived() -> bool:
        return read_head(host, name, len(text)) == text.encode()

    for _ in range(5):
        guest.until(
            f"echo {text} | dd of=/dev/{disk} conv=fsync 2>/dev/null && sync && "
            f"echo wrote{text} > /dev/ttyS0",
            f"wrote{text}",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if arrived():
                return
            time.sleep(1)
    pytest.fail(f"the guest wrote {text!r} to /dev/{disk} five times; the volume never held it")


def test_a_snapshot_restores_what_the_guest_wrote_and_a_clone_outlives_its_source(
    demo,
    node1,  # noqa: F811
    pool_cleanup,  # noqa: F811
    celery_worker,
):
    name = f"qs-{secrets.token_hex(3)}"
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    vm = wait_ready(wait_phase(vm, Phase.RUNNING, timeout=300), timeout=GUEST_BOOT_TIMEOUT * 3)
    # A raw volume: what the guest writes at its offset 0 is the file's first bytes.
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name=f"{name}-data", size_gib=1, format="raw", vm=vm
    )
    volume = wait_volume(volume, VolumePhase.ATTACHED, timeout=300)
    guest = guest_of(vm)
    # The guest has probed the hot-plugged disk (its partition scan would drop a write
    # made meanwhile) once it reports the volume's serial.
    disk = guest.disk(volume.serial)
    # Found by its serial, not assumed to be vdb: a disk plugged in while the guest is
    # still loading its virtio driver is found with the root disk, in PCI order (twice
    # on 2026-12-06 the guest found both at once, 2 s after its banner, and its vdb was
    # the other one). But a guest that booted again on its own is a failure, not
    # something to adapt to.
    assert guest.boots() == 1, "the guest booted again"
    original = f"orig{secrets.token_hex(4)}"
    write_in_guest(guest, node1, volume.backend_name, original, disk)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED, timeout=300)

    snapshot = snapshot_services.snapshot_create(
        actor=demo.bob, volume=Volume.objects.get(pk=volume.pk), name="before"
    )
    wait_for(
        lambda: Snapshot.objects.get(pk=snapshot.pk).phase == SnapshotPhase.READY,
        300,
        message="snapshot not Ready",
    )
    snapshot = Snapshot.objects.get(pk=snapshot.pk)
    assert read_head(node1, snapshot.backend_name, len(original)) == original.encode()

    # The volume changes after the snapshot (written through the storage API here, the
    # VM being stopped): the snapshot does not.
    changed = f"chng{secrets.token_hex(4)}"
    write_head(node1, volume.backend_name, changed.encode() + b"\n")
    assert read_head(node1, volume.backend_name, len(changed)) == changed.encode()
    assert read_head(node1, snapshot.backend_name, len(original)) == original.encode()

    snapshot_services.snapshot_restore(actor=demo.bob, snapshot=snapshot, confirm=volume.name)
    volume = wait_volume(volume, VolumePhase.ATTACHED, timeout=300)
    assert read_head(node1, volume.backend_name, len(original)) == original.encode()

    # The guest boots with the restored disk and reads the original marker.
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_ready(wait_phase(vm, Phase.RUNNING, timeout=300), timeout=GUEST_BOOT_TIMEOUT * 3)
    guest.until(f"head -c 12 /dev/{guest.disk(volume.serial)} > /dev/ttyS0", original)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    wait_phase(vm, Phase.STOPPED, timeout=300)

    # A clone holds the data after its source and the source's snapshot are gone.
    clone = snapshot_services.volume_clone(
        actor=demo.bob, volume=Volume.objects.get(pk=volume.pk), name=f"{name}-copy"
    )
    clone = wait_volume(clone, VolumePhase.READY, timeout=300)
    volume_services.volume_detach(actor=demo.bob, volume=Volume.objects.get(pk=volume.pk))
    wait_volume(volume, VolumePhase.READY, timeout=300, attached_domain="")
    snapshot_services.snapshot_delete(actor=demo.alice, snapshot=snapshot)
    wait_for(lambda: not Snapshot.objects.filter(pk=snapshot.pk).exists(), 300, message="kept")
    volume_services.volume_delete(actor=demo.alice, volume=Volume.objects.get(pk=volume.pk))
    wait_for(lambda: not Volume.objects.filter(pk=volume.pk).exists(), 300, message="kept")
    with pytest.raises(libvirt.libvirtError):
        _volume(node1, volume.backend_name)
    assert read_head(node1, clone.backend_name, len(original)) == original.encode()


def test_a_vm_cloned_to_a_bigger_disk_boots_and_its_guest_sees_the_grown_disk(
    demo,
    node1,  # noqa: F811
    pool_cleanup,  # noqa: F811
    celery_worker,
):
    from compute.services import clones

    name = f"qg-{secrets.token_hex(3)}"
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
        start=False,
    )
    vm = wait_phase(vm, Phase.STOPPED, timeout=300)
    clone = clones.vm_clone(
        actor=demo.bob, vm=vm, name=f"{name}-big", disk_gib=2, memory_mib=320, start=True
    )
    clone = wait_ready(
        wait_phase(clone, Phase.RUNNING, timeout=300), timeout=GUEST_BOOT_TIMEOUT * 3
    )
    root = Volume.objects.get(vm=clone)
    assert (root.size_gib, root.capacity_gib) == (2, 2)
    # Grown through the storage API on the host; the source's disk is as it was.
    assert _volume(node1, root.backend_name).info()[1] == 2 * 1024**3
    assert _volume(node1, Volume.objects.get(vm=vm).backend_name).info()[1] == 1024**3
    # The guest sees a 2 GiB vda (in 512-byte sectors).
    guest_of(clone).until("cat /sys/block/vda/size > /dev/ttyS0", str(2 * 1024**3 // 512))
    vm_services.vm_action(actor=demo.bob, vm=clone, action="force-stop")
    wait_phase(clone, Phase.STOPPED, timeout=300)


def ready_guest(demo, prefix: str):
    """A running, Ready tiny guest of bob's with a 1 GiB root disk."""
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=f"{prefix}-{secrets.token_hex(3)}",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    return wait_ready(wait_phase(vm, Phase.RUNNING, timeout=300), timeout=GUEST_BOOT_TIMEOUT * 3)


def boot_id(guest) -> str:
    """The guest kernel's boot id: the same while it runs on, a new one at every boot."""
    out = guest.until(
        "echo BOOT-$(cat /proc/sys/kernel/random/boot_id)-ID > /dev/ttyS0", "-ID", timeout=300
    )
    start = out.rindex("BOOT-") + len("BOOT-")
    return out[start : out.index("-ID", start)]


def test_a_running_guest_snapshotted_with_its_memory_resumes_from_it_after_a_restore(
    demo,
    node1,  # noqa: F811
    pool_cleanup,  # noqa: F811
    celery_worker,
):
    from compute.models import VirtualMachine
    from monitoring.models import Event
    from tenants.models import Quota

    def used() -> int:
        return Quota.objects.get(tenant=demo.acme).used_storage

    vm = ready_guest(demo, "qm")
    name = vm.name
    guest = guest_of(vm)
    booted = boot_id(guest)
    before = used()

    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="live1", memory=True)
    assert used() == before + 1 + 1  # the 1 GiB disk's copy and 1 GiB for 256 MiB of memory
    for disk in group.disks:
        wait_for(
            lambda d=disk: Snapshot.objects.get(pk=d.pk).phase == SnapshotPhase.READY,
            300,
            message="snapshot not Ready",
        )
    (group,) = snapshot_services.vm_snapshots(vm, "live1")
    memory = group.memory
    assert memory is not None and group.live
    assert not group.quiesced  # the tiny guest has no agent: crash-consistent disks
    assert memory.memory_name in {v.name() for v in _pool(node1).listAllVolumes()}
    # The guest went on running the same boot, in the VM that never left Running.
    assert boot_id(guest) == booted
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING

    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED, timeout=300)
    snapshot_services.vm_snapshot_restore(actor=demo.bob, vm=vm, name="live1", confirm=name)
    for volume in Volume.objects.filter(vm=vm):
        wait_volume(volume, VolumePhase.ATTACHED, timeout=300)
    vm = VirtualMachine.objects.get(pk=vm.pk)
    assert vm.resume_from_id == memory.pk
    assert Event.objects.filter(name=name, reason="ResumeFromSnapshot").exists()

    # The start resumes the guest where the snapshot caught it: the same boot, Ready.
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_ready(wait_phase(vm, Phase.RUNNING, timeout=300), timeout=GUEST_BOOT_TIMEOUT * 3)
    assert Event.objects.filter(name=name, reason="ResumedFromSnapshot").exists()
    assert boot_id(guest) == booted
    assert VirtualMachine.objects.get(pk=vm.pk).resume_from_id is None

    # The next start after a stop boots afresh; deleting the snapshot frees its files.
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED, timeout=300)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_ready(wait_phase(vm, Phase.RUNNING, timeout=300), timeout=GUEST_BOOT_TIMEOUT * 3)
    assert boot_id(guest) != booted
    snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=vm, name="live1")
    wait_for(lambda: not Snapshot.objects.filter(vm=vm).exists(), 120, message="kept")
    assert used() == before
    assert memory.memory_name not in {v.name() for v in _pool(node1).listAllVolumes()}
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    wait_phase(vm, Phase.STOPPED, timeout=300)


def _pool(host) -> libvirt.virStoragePool:
    pool = shared_connection(host.uri).storagePoolLookupByName(POOL)
    pool.refresh(0)
    return pool


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_live_snapshot_leaves_no_half_copy_and_the_guest_runs_on(
    demo,
    node1,  # noqa: F811
    pool_cleanup,  # noqa: F811
    settings,
):
    """Chaos: SIGKILL the worker while it holds a running guest paused for a snapshot
    with memory. Nothing half-made is kept, the quota is charged once, and the task
    driven again by the sweep resumes the guest and takes the snapshot."""
    from django.core.cache import cache

    from compute.models import VirtualMachine
    from tenants.models import Quota
    from tests.compute.test_qemu_vms import _kill, _worker

    def used() -> int:
        return Quota.objects.get(tenant=demo.acme).used_storage

    def ours_in_pool(group) -> set[str]:
        names = {v.name() for v in _pool(node1).listAllVolumes()}
        mine = {d.backend_name for d in group.disks} | {group.memory.memory_name}
        return names & mine

    settings.ISOTOPE_STUCK_SECONDS = 1
    first = _worker({})
    stuck = second = None
    try:
        vm = ready_guest(demo, "qk")
        guest = guest_of(vm)
        booted = boot_id(guest)
        _kill(first)
        stuck = _worker({"ISOTOPE_FAILPOINTS": "snapshot.live.paused=sleep:600"})
        before = used()
        group = snapshot_services.vm_snapshot_create(
            actor=demo.bob, vm=vm, name="live1", memory=True
        )
        domain = shared_connection(node1.uri).lookupByName(vm.domain_name)
        wait_for(
            lambda: domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED,
            120,
            message="the worker never paused the guest",
        )
        _kill(stuck)
        # The killed task left the guest paused and its snapshots Pending, charged once,
        # with no copy or memory file in the pool.
        (group,) = snapshot_services.vm_snapshots(vm, "live1")
        assert group.phase == SnapshotPhase.PENDING and used() == before + 2
        assert ours_in_pool(group) == set()
        assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
        # Its task locks expire (120 s): let them go now rather than wait.
        cache.delete(f"isotope:vm-lock:{vm.pk}")
        for disk in group.disks:
            cache.delete(f"isotope:volume-lock:{disk.volume_id}")
        second = _worker({})
        time.sleep(1.5)  # older than ISOTOPE_STUCK_SECONDS
        assert snapshot_services.snapshots_redrive()
        wait_for(
            lambda: all(s.phase == SnapshotPhase.READY for s in Snapshot.objects.filter(vm=vm)),
            300,
            message="the snapshot was not taken again",
        )
        (group,) = snapshot_services.vm_snapshots(vm, "live1")
        assert ours_in_pool(group) == {d.backend_name for d in group.disks} | {
            group.memory.memory_name
        }
        assert used() == before + 2
        assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert boot_id(guest) == booted  # resumed, not rebooted
        assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
    finally:
        for process in (first, stuck, second):
            if process is not None:
                _kill(process)
