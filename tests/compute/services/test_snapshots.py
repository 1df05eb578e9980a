"""Volume snapshots and clones on libvirt's test driver through a real Celery worker:
take, restore (confirmed, VM stopped), delete, quota charged and released exactly once,
a clone outlives its source, refusals change nothing."""

from __future__ import annotations

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase, SnapshotPhase, VolumePhase
from compute.models import Snapshot, Volume
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from monitoring import live
from monitoring.models import Event
from portal.exceptions import Conflict, PermissionDenied, QuotaExceeded, ValidationError
from tenants.models import AuditLog
from tenants.services import quota_release
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.services.test_volumes import (
    pool_volumes,
    running_vm,
    used_storage,
    wait_volume,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.libvirt_test_driver


def wait_snapshot(snapshot, phase: str, timeout: float = 15) -> Snapshot:
    wait_for(
        lambda: Snapshot.objects.filter(pk=snapshot.pk, phase=phase).exists(),
        timeout,
        message=f"{snapshot.name} did not reach {phase}",
    )
    return Snapshot.objects.select_related("volume", "tenant").get(pk=snapshot.pk)


def ready_volume(demo, name="data1", size=5) -> Volume:
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name=name, size_gib=size
    )
    return wait_volume(volume, VolumePhase.READY)


def test_take_restore_delete_a_snapshot_with_quota_exact(demo, make_host, celery_worker):
    host = make_host()
    volume = ready_volume(demo)
    assert used_storage(demo.acme) == 5

    def volume_actions() -> list[str]:
        [shown] = live.state_snapshot("acme", "volume", "data1")
        return shown["data"]["actionsByRole"]["admin"]

    assert "delete" in volume_actions()
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="before")
    assert snapshot.phase == SnapshotPhase.PENDING
    assert "delete" not in volume_actions()  # an open page hides the volume's Delete
    assert used_storage(demo.acme) == 10  # a full copy is charged in the same transaction
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    assert snapshot.backend_name in pool_volumes(host)
    assert volume.backend_name in pool_volumes(host)
    assert AuditLog.objects.filter(action="snapshot.create", target__endswith="before").exists()
    assert Event.objects.filter(name="data1", reason="SnapshotTaken").exists()

    with pytest.raises(ValidationError) as refused:
        snapshot_services.snapshot_restore(actor=demo.bob, snapshot=snapshot, confirm="data")
    assert "confirm" in refused.value.errors
    assert Snapshot.objects.get(pk=snapshot.pk).phase == SnapshotPhase.READY

    snapshot_services.snapshot_restore(actor=demo.bob, snapshot=snapshot, confirm="data1")
    wait_for(
        lambda: Event.objects.filter(name="data1", reason="SnapshotRestored").exists(),
        15,
        message="no restore",
    )
    volume = wait_volume(volume, VolumePhase.READY)
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    assert snapshot.restored is not None and volume.capacity_gib == 5
    assert {volume.backend_name, snapshot.backend_name} <= set(pool_volumes(host))
    assert used_storage(demo.acme) == 10

    with pytest.raises(Conflict) as has_snapshots:
        volume_services.volume_delete(actor=demo.alice, volume=volume)
    assert has_snapshots.value.errors["snapshots"] == ["before"]

    with pytest.raises(PermissionDenied):
        snapshot_services.snapshot_delete(actor=demo.bob, snapshot=snapshot)
    snapshot_services.snapshot_delete(actor=demo.alice, snapshot=snapshot)
    wait_for(lambda: not Snapshot.objects.filter(pk=snapshot.pk).exists(), 15, message="kept")
    assert snapshot.backend_name not in pool_volumes(host)
    assert used_storage(demo.acme) == 5
    assert not quota_release(snapshot.quota_ref)  # released once, already
    # and shows it again, nothing holding the volume (pushed after the task's commit)
    wait_for(lambda: "delete" in volume_actions(), 10, message="no Delete")
    volume_services.volume_delete(actor=demo.alice, volume=volume)
    wait_for(lambda: not Volume.objects.filter(pk=volume.pk).exists(), 15, message="kept")
    assert used_storage(demo.acme) == 0


def test_a_disk_of_a_running_vm_is_snapshotted_and_restored_only_when_stopped(
    demo, make_host, tiny_image, celery_worker
):
    make_host()
    vm = running_vm(demo)
    volume = ready_volume(demo)
    volume = volume_services.volume_attach(actor=demo.bob, volume=volume, vm=vm)
    volume = wait_volume(volume, VolumePhase.ATTACHED)

    with pytest.raises(Conflict) as running:
        snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    assert "stop" in running.value.message
    assert not Snapshot.objects.exists() and used_storage(demo.acme) == 5

    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED)
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)

    # While a restore runs the VM may not start (the service sets Restoring under the
    # VM's lock; here the volume is held in that phase as the service leaves it).
    Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.RESTORING)
    with pytest.raises(Conflict) as restoring:
        vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    assert "restored" in restoring.value.message
    Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.ATTACHED)

    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_phase(vm, Phase.RUNNING)
    with pytest.raises(Conflict):
        snapshot_services.snapshot_restore(actor=demo.bob, snapshot=snapshot, confirm="data1")
    assert Volume.objects.get(pk=volume.pk).phase == VolumePhase.ATTACHED

    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    wait_phase(vm, Phase.STOPPED)
    snapshot_services.snapshot_restore(actor=demo.bob, snapshot=snapshot, confirm="data1")
    assert Volume.objects.get(pk=volume.pk).phase in (VolumePhase.RESTORING, VolumePhase.ATTACHED)
    wait_for(
        lambda: Event.objects.filter(name="data1", reason="Restored").exists(), 15, message="no"
    )
    volume = wait_volume(volume, VolumePhase.ATTACHED)
    assert volume.attached_domain == vm.domain_name


def test_a_clone_is_independent_of_its_source(demo, make_host, celery_worker):
    host = make_host()
    source = ready_volume(demo, "src", size=3)
    clone = snapshot_services.volume_clone(actor=demo.bob, volume=source, name="copy")
    assert clone.source_volume == source and clone.created_from == "volume"
    assert used_storage(demo.acme) == 6
    clone = wait_volume(clone, VolumePhase.READY)
    assert clone.capacity_gib == 3 and clone.backend_name != source.backend_name
    assert AuditLog.objects.filter(action="volume.clone", target="volume/copy").exists()

    volume_services.volume_delete(actor=demo.alice, volume=source)
    wait_for(lambda: not Volume.objects.filter(pk=source.pk).exists(), 15, message="kept")
    assert source.backend_name not in pool_volumes(host)
    clone = Volume.objects.get(pk=clone.pk)
    assert clone.phase == VolumePhase.READY and clone.source_name == "src"
    assert clone.backend_name in pool_volumes(host)
    assert used_storage(demo.acme) == 3


def test_a_volume_in_use_is_cloned_from_its_snapshot(demo, make_host, tiny_image, celery_worker):
    host = make_host()
    source = ready_volume(demo, "src", size=3)
    taken = wait_snapshot(
        snapshot_services.snapshot_create(actor=demo.bob, volume=source, name="s1"),
        SnapshotPhase.READY,
    )
    # The volume goes into use on a running VM: its data now cannot be copied ...
    vm = wait_phase(running_vm(demo), Phase.RUNNING)
    volume_services.volume_attach(actor=demo.bob, volume=source, vm=vm)
    wait_volume(source, VolumePhase.ATTACHED)
    with pytest.raises(Conflict):
        snapshot_services.volume_clone(actor=demo.bob, volume=source, name="now")
    used = used_storage(demo.acme)
    for snapshot, error in (("nope", ValidationError), ("s1", ValidationError)):
        with pytest.raises(error):
            snapshot_services.volume_clone(
                actor=demo.bob,
                volume=source,
                name="src" if snapshot == "s1" else "x",
                snapshot=snapshot,
            )
    with pytest.raises(PermissionDenied):
        snapshot_services.volume_clone(actor=demo.carol, volume=source, name="x", snapshot="s1")
    assert used_storage(demo.acme) == used and not Volume.objects.filter(name__in=["now", "x"])

    # ... but its snapshot can: what it held then, the volume left in use.
    copy = snapshot_services.volume_clone(actor=demo.bob, volume=source, name="then", snapshot="s1")
    assert (copy.created_from, copy.source_snapshot, copy.source_name) == (
        "snapshot",
        taken,
        "src@s1",
    )
    assert used_storage(demo.acme) == used + 3
    copy = wait_volume(copy, VolumePhase.READY)
    assert copy.vm is None and copy.host == host and copy.capacity_gib == 3
    assert copy.backend_name in pool_volumes(host)
    assert Volume.objects.get(pk=source.pk).phase == VolumePhase.ATTACHED
    assert AuditLog.objects.filter(action="volume.clone", target="volume/then").exists()
    # The copy does not depend on the snapshot: it goes, the copy stays.
    snapshot_services.snapshot_delete(actor=demo.alice, snapshot=taken)
    wait_for(lambda: not Snapshot.objects.filter(pk=taken.pk).exists(), 15, message="kept")
    assert Volume.objects.get(pk=copy.pk).phase == VolumePhase.READY


def test_bad_snapshot_input_changes_nothing(demo, make_host, celery_worker):
    make_host()
    volume = ready_volume(demo)
    for name, field in (("", "name"), ("Bad_Name", "name")):
        with pytest.raises(ValidationError) as bad:
            snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name=name)
        assert field in bad.value.errors
    with pytest.raises(PermissionDenied):
        snapshot_services.snapshot_create(actor=demo.carol, volume=volume, name="s")
    first = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s")
    with pytest.raises(ValidationError) as taken:
        snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s")
    assert taken.value.errors["name"] == ["Taken."]
    with pytest.raises(ValidationError):
        snapshot_services.volume_clone(actor=demo.bob, volume=volume, name="data1")
    assert Snapshot.objects.count() == 1 and Volume.objects.count() == 1
    assert used_storage(demo.acme) == 10
    wait_snapshot(first, SnapshotPhase.READY)


def test_a_restore_whose_task_was_lost_is_driven_again_by_the_sweep(
    demo, make_host, settings, celery_worker
):
    from datetime import timedelta

    from django.core.cache import cache
    from django.utils import timezone

    from compute.tasks.volumes import volumes_sweep

    make_host()
    settings.ISOTOPE_STUCK_SECONDS = 1
    volume = ready_volume(demo)
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    # The snapshot's task writes Ready before it lets go of the volume: wait for it to
    # finish, or the sweep rightly takes the volume for one still being worked on.
    wait_for(lambda: cache.get(f"isotope:volume-lock:{volume.pk}") is None)
    # A restore whose worker died before it ran, long ago: the volume would stay
    # Restoring (and its VM unable to start) for ever.
    old = timezone.now() - timedelta(seconds=30)
    Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.RESTORING)
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=SnapshotPhase.RESTORING, updated=old)
    assert snapshot_services.snapshots_stale() == [snapshot]
    volumes_sweep()
    wait_volume(volume, VolumePhase.READY)
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    assert snapshot.restored is not None
    assert snapshot_services.snapshots_stale() == []


def test_a_stopped_vms_disks_are_snapshotted_restored_and_deleted_together(
    demo, make_host, tiny_image, celery_worker
):
    from compute.models import VirtualMachine

    host = make_host()
    vm = running_vm(demo, disk_gib=2)
    data = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data1", size_gib=3, vm=vm
    )
    wait_volume(data, VolumePhase.ATTACHED)
    assert used_storage(demo.acme) == 5
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED)

    # All disks or none: a quota too small for both leaves nothing behind.
    from tenants import services as tenant_services

    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"storage": 8})
    with pytest.raises(QuotaExceeded):
        snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="v1")
    assert not Snapshot.objects.exists() and used_storage(demo.acme) == 5
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"storage": 100})

    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="v1")
    assert [s.volume.device for s in group.disks] == ["vda", "vdb"]
    assert used_storage(demo.acme) == 10
    for disk in group.disks:
        wait_snapshot(disk, SnapshotPhase.READY)
    (group,) = snapshot_services.vm_snapshots(vm)
    assert group.name == "v1" and group.phase == SnapshotPhase.READY
    assert {s.backend_name for s in group.disks} <= set(pool_volumes(host))

    with pytest.raises(ValidationError):
        snapshot_services.vm_snapshot_restore(actor=demo.bob, vm=vm, name="v1", confirm="x")
    snapshot_services.vm_snapshot_restore(actor=demo.bob, vm=vm, name="v1", confirm="web1")
    for disk in group.disks:
        assert wait_snapshot(disk, SnapshotPhase.READY).restored is not None
    for volume in Volume.objects.filter(vm=vm):
        wait_volume(volume, VolumePhase.ATTACHED)
    vm_services.vm_action(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk), action="start")
    wait_phase(vm, Phase.RUNNING)

    snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=vm, name="v1")
    wait_for(lambda: not Snapshot.objects.exists(), 15, message="kept")
    assert used_storage(demo.acme) == 5
    assert not {s.backend_name for s in group.disks} & set(pool_volumes(host))


def test_a_running_vms_disks_are_snapshotted_together_while_its_guest_is_paused(
    demo, make_host, tiny_image, celery_worker
):
    from compute.models import VirtualMachine
    from compute.services import reconcile

    host = make_host()
    vm = running_vm(demo, disk_gib=2)
    data = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data1", size_gib=3, vm=vm
    )
    wait_volume(data, VolumePhase.ATTACHED)
    # The test driver cannot save memory: refused, nothing recorded or charged.
    with pytest.raises(Conflict) as no_memory:
        snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="m1", memory=True)
    assert "without memory" in no_memory.value.message
    assert not Snapshot.objects.exists() and used_storage(demo.acme) == 5

    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="live1")
    assert group.live and group.memory is None
    assert used_storage(demo.acme) == 10
    for disk in group.disks:
        wait_snapshot(disk, SnapshotPhase.READY)
    (group,) = snapshot_services.vm_snapshots(vm)
    # The test driver's guest agent answers: its filesystems were frozen for the copy.
    assert group.phase == SnapshotPhase.READY and group.quiesced
    assert all("quiesced" in s.message and "copied in" in s.message for s in group.disks)
    assert {s.backend_name for s in group.disks} <= set(pool_volumes(host))
    # The guest runs again and the VM never left Running.
    domain = shared_connection(host.uri).lookupByName(vm.domain_name)
    assert domain.state()[0] == 1  # VIR_DOMAIN_RUNNING
    vm = VirtualMachine.objects.get(pk=vm.pk)
    assert vm.phase == Phase.RUNNING
    assert not Event.objects.filter(kind="vm", name="web1", type="Warning").exists()

    # While a live snapshot is being taken its task owns the domain: the reconciler
    # does not record the pause as the VM's phase (nor would it a saved domain).
    Snapshot.objects.filter(vm=vm).update(phase=SnapshotPhase.PENDING)
    domain.suspend()
    try:
        reconcile.reconcile_host(host)
        assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
    finally:
        Snapshot.objects.filter(vm=vm).update(phase=SnapshotPhase.READY)
        domain.resume()


def test_a_live_snapshot_whose_vm_stopped_before_its_turn_fails_and_is_released(
    demo, make_host, tiny_image, celery_worker
):
    from compute.tasks.snapshots import vm_snapshot_live

    host = make_host()
    vm = running_vm(demo, disk_gib=2)
    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="live1")
    (disk,) = group.disks
    wait_snapshot(disk, SnapshotPhase.READY)
    # Pending again, its domain off (stopped behind the task's back): the task says so.
    Snapshot.objects.filter(pk=disk.pk).update(phase=SnapshotPhase.PENDING)
    shared_connection(host.uri).lookupByName(vm.domain_name).destroy()
    vm_snapshot_live.delay(vm.pk, "live1")
    failed = wait_snapshot(disk, SnapshotPhase.FAILED)
    assert "was shutoff, not running" in failed.message
    assert disk.backend_name not in pool_volumes(host)  # the earlier copy is not kept
    snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=vm, name="live1")
    wait_for(lambda: not Snapshot.objects.exists(), 15, message="kept")
    assert used_storage(demo.acme) == 2


def test_a_restore_whose_volume_stopped_waiting_gives_the_snapshot_back(
    demo, make_host, celery_worker
):
    from compute.tasks.snapshots import snapshot_apply

    make_host()
    volume = ready_volume(demo)
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    # Restoring, but its volume was failed in the meantime (e.g. by an admin's fix).
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=SnapshotPhase.RESTORING)
    Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.FAILED)
    snapshot_apply.delay(snapshot.pk)
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    assert "Not restored" in snapshot.message and snapshot.restored is None


# --- A restore that fails, then a retry ---------------------------------------------------
def test_a_restore_whose_copy_is_gone_leaves_the_volume_as_it_was_and_usable(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = running_vm(demo, disk_gib=1)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="stop")
    wait_phase(vm, Phase.STOPPED)
    root = Volume.objects.get(vm=vm)
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=root, name="s1")
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    # The copy is lost on the host (removed by hand, a disk replaced…).
    pool = shared_connection(host.uri).storagePoolLookupByName(snapshot.pool)
    pool.storageVolLookupByName(snapshot.backend_name).delete(0)

    snapshot_services.snapshot_restore(actor=demo.bob, snapshot=snapshot, confirm=root.name)
    snapshot = wait_snapshot(snapshot, SnapshotPhase.FAILED)
    assert "gone from the host" in snapshot.message
    root = wait_volume(root, VolumePhase.ATTACHED)
    assert "was not changed" in root.message and root.backend_name in pool_volumes(host)
    assert Event.objects.filter(name=root.name, reason="RestoreFailed", type="Warning").exists()
    # Usable: the VM starts on it, and a new snapshot of it is taken and restored.
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    wait_phase(vm, Phase.RUNNING)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="stop")
    wait_phase(vm, Phase.STOPPED)
    again = snapshot_services.snapshot_create(actor=demo.bob, volume=root, name="s2")
    again = wait_snapshot(again, SnapshotPhase.READY)
    snapshot_services.snapshot_restore(actor=demo.bob, snapshot=again, confirm=root.name)
    wait_for(lambda: Snapshot.objects.get(pk=again.pk).restored, 15, message="not restored")
    # The dead snapshot goes, its quota with it.
    snapshot_services.snapshot_delete(actor=demo.alice, snapshot=snapshot)
    wait_for(lambda: not Snapshot.objects.filter(pk=snapshot.pk).exists(), 15, message="kept")
    assert used_storage(demo.acme) == 2


def test_a_volume_a_restore_left_failed_is_repaired_by_restoring_again(
    demo, make_host, celery_worker
):
    host = make_host()
    volume = ready_volume(demo)
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    snapshot = wait_snapshot(snapshot, SnapshotPhase.READY)
    # What the task records when the copy back fails after the volume's data was
    # dropped: the volume is Failed, the snapshot Ready.
    pool = shared_connection(host.uri).storagePoolLookupByName(volume.pool)
    pool.storageVolLookupByName(volume.backend_name).delete(0)
    snapshot_services.restore_failed(volume, snapshot, "The host's pool is full.")
    volume = Volume.objects.get(pk=volume.pk)
    assert volume.phase == VolumePhase.FAILED and "restore s1 again" in volume.message
    with pytest.raises(Conflict):  # a Failed volume is not copied
        snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s2")

    snapshot_services.snapshot_restore(actor=demo.bob, snapshot=snapshot, confirm="data1")
    volume = wait_volume(volume, VolumePhase.READY)
    assert volume.message == "" and volume.backend_name in pool_volumes(host)
    assert wait_snapshot(snapshot, SnapshotPhase.READY).restored is not None
    assert used_storage(demo.acme) == 10


def test_a_task_outcome_is_recorded_only_over_the_phase_the_task_acted_on(demo, make_host):
    """The recorder's compare-and-set: a snapshot task's outcome, computed while the
    snapshot was Pending, does not land once the snapshot has moved on (here Deleting,
    as an admin's delete would make it) and leaves no event."""
    from compute.tasks import volumes as volume_tasks

    make_host()
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data1", size_gib=1
    )
    volume_tasks.volume_apply.apply(args=(volume.pk,))
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    acted = Snapshot.objects.get(pk=snapshot.pk)  # Pending, as the task read it
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=SnapshotPhase.DELETING)
    snapshot_services.snapshot_observe(acted, SnapshotPhase.READY, "taken", reason="SnapshotTaken")
    assert Snapshot.objects.get(pk=snapshot.pk).phase == SnapshotPhase.DELETING
    assert not Event.objects.filter(reason="SnapshotTaken").exists()
    snapshot_services.snapshot_observe(
        Snapshot.objects.get(pk=snapshot.pk), SnapshotPhase.FAILED, "gone", reason="X"
    )
    assert Snapshot.objects.get(pk=snapshot.pk).phase == SnapshotPhase.FAILED
