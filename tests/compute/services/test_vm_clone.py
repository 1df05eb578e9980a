"""Cloning a whole VM on libvirt's test driver with a real Celery worker: a stopped VM
with a root and a data disk becomes a second VM with copies of both (same devices,
sizes, image and labels), charged to the quota in one transaction, independent of its
source; a running source, a taken name or a quota refusal changes nothing."""

from __future__ import annotations

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase, VolumePhase, VolumeSource
from compute.models import VirtualMachine, Volume
from compute.services import clones
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.services.volumes import GIB
from monitoring.models import Event
from portal.exceptions import Conflict, NotFound, PermissionDenied, QuotaExceeded, ValidationError
from tenants.models import AuditLog, Quota
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.services.test_volumes import POOL, pool_volumes, used_storage, wait_volume
from tests.conftest import wait_for

pytestmark = pytest.mark.libvirt_test_driver


def stopped_vm_with_two_disks(demo) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="web1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=2,
        start=False,
        labels={"tier": "web"},
    )
    vm = wait_phase(vm, Phase.STOPPED)
    data = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data1", size_gib=3, vm=vm
    )
    wait_volume(data, VolumePhase.ATTACHED)
    return VirtualMachine.objects.get(pk=vm.pk)


def test_a_stopped_vm_is_cloned_with_copies_of_all_its_disks(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = stopped_vm_with_two_disks(demo)
    assert used_storage(demo.acme) == 5
    clone = clones.vm_clone(actor=demo.bob, vm=vm, name="web2")
    # Charged at once: its vCPU, memory and VM count, and both copies' storage.
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_storage, quota.used_vms) == (10, 2)
    clone = wait_phase(clone, Phase.STOPPED)
    assert (clone.vcpus, clone.memory_mib, clone.disk_gib, clone.image.name) == (1, 256, 2, "tiny")
    assert clone.labels == {"tier": "web"} and clone.host == vm.host
    copies = {v.device: v for v in Volume.objects.filter(vm=clone)}
    assert sorted(copies) == ["vda", "vdb"]
    assert copies["vda"].name == "web2-root" and copies["vdb"].name == "web2-vdb"
    for device, source in (("vda", "web1-root"), ("vdb", "data1")):
        copy = wait_volume(copies[device], VolumePhase.ATTACHED)
        assert copy.created_from == VolumeSource.VOLUME and copy.source_name == source
        assert copy.size_gib == Volume.objects.get(name=source).size_gib
        assert copy.backend_name in pool_volumes(host)
    assert copies["vda"].delete_with_vm and not copies["vdb"].delete_with_vm
    assert AuditLog.objects.filter(action="vm.clone", target="vm/web2").exists()
    assert Event.objects.filter(kind="vm", name="web1", reason="Cloning").exists()

    # Independent: the source and its disks go, the clone starts with its own copies.
    vm_services.vm_action(actor=demo.alice, vm=vm, action="delete")
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 20, message="kept")
    assert not Volume.objects.filter(name="web1-root").exists()
    vm_services.vm_action(actor=demo.bob, vm=clone, action="start")
    wait_phase(clone, Phase.RUNNING)
    assert {copies["vda"].backend_name, copies["vdb"].backend_name} <= set(pool_volumes(host))


def test_a_running_source_a_taken_name_or_no_quota_changes_nothing(
    demo, make_host, tiny_image, celery_worker
):
    make_host()
    vm = stopped_vm_with_two_disks(demo)
    before = (VirtualMachine.objects.count(), Volume.objects.count(), used_storage(demo.acme))
    with pytest.raises(ValidationError) as taken:
        clones.vm_clone(actor=demo.bob, vm=vm, name="web1")
    assert "name" in taken.value.errors
    with pytest.raises(PermissionDenied):
        clones.vm_clone(actor=demo.carol, vm=vm, name="web2")
    Quota.objects.filter(tenant=demo.acme).update(storage=6)
    with pytest.raises(QuotaExceeded):
        clones.vm_clone(actor=demo.bob, vm=vm, name="web2")
    Quota.objects.filter(tenant=demo.acme).update(storage=200)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    wait_phase(vm, Phase.RUNNING)
    with pytest.raises(Conflict) as running:
        clones.vm_clone(actor=demo.bob, vm=vm, name="web2")
    assert "stop it first" in running.value.message
    after = (VirtualMachine.objects.count(), Volume.objects.count(), used_storage(demo.acme))
    assert after == before


def test_a_running_vm_is_cloned_from_one_of_its_snapshots(
    demo, make_host, tiny_image, celery_worker
):
    from compute.choices import SnapshotPhase
    from compute.models import Snapshot
    from compute.services import snapshots as snapshot_services

    host = make_host()
    vm = stopped_vm_with_two_disks(demo)
    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="s1")
    snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="s2")
    wait_for(
        lambda: not Snapshot.objects.exclude(phase=SnapshotPhase.READY).exists(),
        20,
        message="snapshots not Ready",
    )
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_phase(vm, Phase.RUNNING)
    used = used_storage(demo.acme)
    with pytest.raises(NotFound):
        clones.vm_clone(actor=demo.bob, vm=vm, name="web2", snapshot="nope")
    assert used_storage(demo.acme) == used and VirtualMachine.objects.count() == 1

    # The source runs on: a snapshot is consistent, its copies are what is cloned.
    clone = clones.vm_clone(actor=demo.bob, vm=vm, name="web2", snapshot="s1", start=True)
    assert used_storage(demo.acme) == used + 5  # the copies of the 2 + 3 GiB disks
    copies = {v.device: v for v in Volume.objects.filter(vm=clone)}
    by_device = {s.volume.device: s for s in group.disks}
    assert sorted(copies) == ["vda", "vdb"]
    for device, copy in copies.items():
        assert copy.created_from == VolumeSource.SNAPSHOT
        assert copy.source_snapshot_id == by_device[device].pk
        assert copy.source_name == f"{by_device[device].volume.name}@s1"
    # The snapshot is kept while it is copied (or its copy is done already).
    try:
        snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=vm, name="s1")
    except Conflict as busy:
        assert "being copied" in busy.message
    clone = wait_phase(clone, Phase.RUNNING)
    for copy in copies.values():
        assert wait_volume(copy, VolumePhase.ATTACHED).backend_name in pool_volumes(host)
    assert AuditLog.objects.filter(action="vm.clone", target="vm/web2").exists()

    Snapshot.objects.filter(vm=vm, name="s2").update(phase=SnapshotPhase.PENDING)
    with pytest.raises(Conflict):
        clones.vm_clone(actor=demo.bob, vm=vm, name="web3", snapshot="s2")
    assert not VirtualMachine.objects.filter(name="web3").exists()


def test_a_clone_gets_another_size_and_a_root_disk_grown_by_the_storage_api(
    demo, make_host, tiny_image, flavors, celery_worker
):
    host = make_host()
    vm = stopped_vm_with_two_disks(demo)
    assert used_storage(demo.acme) == 5
    clone = clones.vm_clone(actor=demo.bob, vm=vm, name="web2", flavor="medium", vcpus=3)
    # Charged at once for the new size: 3 vCPUs (explicit beats the flavor), the
    # flavor's memory, its 10 GiB root disk (larger than the source's 2) and the 3 GiB copy.
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_cpu, quota.used_memory, quota.used_storage) == (4, 1280, 18)
    clone = wait_phase(clone, Phase.STOPPED)
    assert (clone.vcpus, clone.memory_mib, clone.disk_gib) == (3, 1024, 10)
    copies = {
        v.device: wait_volume(v, VolumePhase.ATTACHED) for v in Volume.objects.filter(vm=clone)
    }
    assert (copies["vda"].size_gib, copies["vda"].capacity_gib) == (10, 10)
    assert (copies["vdb"].size_gib, copies["vdb"].capacity_gib) == (3, 3)
    # The pool's file has the new capacity; the source's root disk is as it was.
    pool = shared_connection(host.uri).storagePoolLookupByName(POOL)
    assert pool.storageVolLookupByName(copies["vda"].backend_name).info()[1] == 10 * GIB
    source_root = Volume.objects.get(name="web1-root")
    assert pool.storageVolLookupByName(source_root.backend_name).info()[1] == 2 * GIB
    audit = AuditLog.objects.get(action="vm.clone", target="vm/web2")
    assert audit.detail["size"] == {"vcpus": 3, "memory_mib": 1024, "disk_gib": 10}
    assert audit.detail["storage_gib"] == 13

    # A flavor's disk smaller than the source's root is no shrink: the root keeps its size.
    small = clones.vm_clone(actor=demo.bob, vm=vm, name="web3", flavor="small", disk_gib=None)
    assert (small.vcpus, small.memory_mib, small.disk_gib) == (1, 512, 2)
    wait_phase(small, Phase.STOPPED)
    assert Volume.objects.get(vm=small, device="vda").capacity_gib == 2


def test_a_smaller_root_disk_or_a_bad_size_is_refused_and_changes_nothing(
    demo, make_host, tiny_image, flavors, celery_worker
):
    make_host()
    vm = stopped_vm_with_two_disks(demo)
    before = (VirtualMachine.objects.count(), Volume.objects.count(), used_storage(demo.acme))
    with pytest.raises(ValidationError) as smaller:
        clones.vm_clone(actor=demo.bob, vm=vm, name="web2", disk_gib=1)
    assert "Disks only grow" in smaller.value.errors["disk_gib"][0]
    with pytest.raises(ValidationError) as flavor:
        clones.vm_clone(actor=demo.bob, vm=vm, name="web2", flavor="huge")
    assert "flavor" in flavor.value.errors
    with pytest.raises(ValidationError) as vcpus:
        clones.vm_clone(actor=demo.bob, vm=vm, name="web2", vcpus=0, memory_mib="lots")
    assert {"vcpus", "memory_mib"} <= set(vcpus.value.errors)
    Quota.objects.filter(tenant=demo.acme).update(storage=12)
    with pytest.raises(QuotaExceeded):
        clones.vm_clone(actor=demo.bob, vm=vm, name="web2", disk_gib=8)  # 5 + 8 + 3 > 12
    after = (VirtualMachine.objects.count(), Volume.objects.count(), used_storage(demo.acme))
    assert after == before
