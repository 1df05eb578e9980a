"""Backups on libvirt's test driver through a real Celery worker: a VM snapshot is
exported to the backup directory (a file per disk, its sha256 recorded, progress to
100 %), restored into a new VM charged to the quota (a missing or corrupt file fails the
restore in its task: the new VM goes, its quota released once), and deleted (admin
only, audited, files removed)."""

from __future__ import annotations

import hashlib

import pytest

from compute.choices import BackupPhase, Phase, SnapshotPhase, VolumeSource
from compute.models import Backup, Snapshot, VirtualMachine, Volume
from compute.services import backups as backup_services
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.tasks.libvirt import vm_provision
from monitoring.models import Event
from portal.exceptions import Conflict, NotFound, PermissionDenied, ValidationError
from tenants.models import AuditLog, Quota, Reservation
from tests.compute.services.test_snapshots import wait_snapshot
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.services.test_volumes import running_vm, used_storage
from tests.conftest import wait_for

pytestmark = pytest.mark.libvirt_test_driver


@pytest.fixture
def backup_dir(settings, tmp_path):
    settings.ISOTOPE_BACKUP_DIR = str(tmp_path / "backups")
    return tmp_path / "backups"


def wait_backup(backup, phase: str, timeout: float = 30) -> Backup:
    wait_for(
        lambda: Backup.objects.filter(pk=backup.pk, phase=phase).exists(),
        timeout,
        message=f"{backup.name} did not reach {phase}",
    )
    return Backup.objects.select_related("tenant").get(pk=backup.pk)


def snapshotted_vm(demo):
    vm = running_vm(demo, disk_gib=2)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED)
    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="s1")
    for disk in group.disks:
        wait_snapshot(disk, SnapshotPhase.READY)
    return VirtualMachine.objects.get(pk=vm.pk)


def ready_backup(demo, name="b1") -> Backup:
    vm = snapshotted_vm(demo)
    backup = backup_services.backup_create(actor=demo.bob, vm=vm, snapshot="s1", name=name)
    return wait_backup(backup, BackupPhase.READY)


def test_a_vm_snapshot_is_exported_with_checksums_and_restored_into_a_new_vm(
    demo, make_host, tiny_image, celery_worker, backup_dir
):
    make_host()
    backup = ready_backup(demo)
    assert backup.progress == 100 and backup.size_bytes > 0
    (disk,) = backup.disks
    path = backup_dir / "acme" / str(backup.uid) / "vda.qcow2"
    assert disk["file"] == "vda.qcow2" and disk["sizeGiB"] == 2
    assert disk["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes()[:4] == b"QFI\xfb"  # a qcow2 file
    assert AuditLog.objects.filter(action="backup.create", target="backup/b1").exists()
    # Its snapshot is free again: it can be deleted, the backup stays.
    snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=backup.vm, name="s1")
    wait_for(lambda: not Snapshot.objects.exists(), 15, message="snapshot kept")

    used = used_storage(demo.acme)
    vm = backup_services.backup_restore(actor=demo.bob, backup=backup, name="back1", start=True)
    assert used_storage(demo.acme) == used + 2  # the new root disk, charged at once
    (root,) = Volume.objects.filter(vm=vm)
    assert root.created_from == VolumeSource.BACKUP and root.source_backup == backup
    assert (vm.vcpus, vm.memory_mib, vm.image.name) == (1, 256, "tiny")
    wait_phase(vm, Phase.RUNNING)
    assert AuditLog.objects.filter(action="backup.restore", target="vm/back1").exists()


def quota_used(tenant) -> tuple:
    quota = Quota.objects.get(tenant=tenant)
    return (quota.used_cpu, quota.used_memory, quota.used_storage, quota.used_vms)


def test_a_corrupt_backup_file_fails_the_restore_in_its_task_and_the_new_vm_goes(
    demo, make_host, tiny_image, celery_worker, backup_dir
):
    make_host()
    backup = ready_backup(demo)
    path = backup_services.disk_path(backup, backup.disks[0])
    vms, volumes, used = (
        VirtualMachine.objects.count(),
        Volume.objects.count(),
        quota_used(demo.acme),
    )
    with path.open("r+b") as file:
        file.seek(100)
        file.write(b"rot")
    # The request reads no file: it checks the backup is Ready and the quota, and
    # accepts; the new VM is charged at once.
    vm = backup_services.backup_restore(actor=demo.bob, backup=backup, name="back1", start=True)
    assert quota_used(demo.acme) != used
    refs = [f"vm:{vm.uid}", *(f"volume:{v.uid}" for v in Volume.objects.filter(vm=vm))]
    # The task finds the file corrupt before writing any disk: the restore fails with a
    # Warning naming it, and the VM and its volume are gone with their quota.
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 30, message="kept")
    warning = Event.objects.get(kind="backup", name="b1", reason="RestoreFailed")
    assert warning.type == "Warning"
    assert "vda.qcow2 is corrupt (its sha256 does not match)" in warning.message
    assert "back1" in warning.message
    assert Event.objects.filter(
        kind="vm", name="back1", type="Warning", reason="RestoreFailed"
    ).exists()
    assert VirtualMachine.objects.count() == vms and Volume.objects.count() == volumes
    assert quota_used(demo.acme) == used
    # Released exactly once: each reservation closed one time; a redelivered task
    # (the same message again) finds no VM and releases nothing more.
    assert Reservation.objects.filter(ref__in=refs, released__isnull=False).count() == 2
    vm_provision.apply(args=(vm.pk,))
    assert quota_used(demo.acme) == used
    assert AuditLog.objects.filter(
        action="backup.restore", target="vm/back1", outcome="failed"
    ).exists()
    assert Backup.objects.get(pk=backup.pk).phase == BackupPhase.READY

    # A missing file likewise, named.
    path.unlink()
    vm = backup_services.backup_restore(actor=demo.bob, backup=backup, name="back2")
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 30, message="kept")
    assert Event.objects.filter(
        kind="backup", reason="RestoreFailed", message__contains="vda.qcow2 is missing"
    ).exists()
    assert quota_used(demo.acme) == used


def test_bad_backup_input_and_roles_change_nothing(
    demo, make_host, tiny_image, celery_worker, backup_dir
):
    make_host()
    vm = snapshotted_vm(demo)
    for bad in ("", "Bad_Name", "x" * 64):
        with pytest.raises(ValidationError):
            backup_services.backup_create(actor=demo.bob, vm=vm, snapshot="s1", name=bad)
    with pytest.raises(NotFound):
        backup_services.backup_create(actor=demo.bob, vm=vm, snapshot="nope", name="b1")
    with pytest.raises(PermissionDenied):
        backup_services.backup_create(actor=demo.carol, vm=vm, snapshot="s1", name="b1")
    assert not Backup.objects.exists()

    backup = backup_services.backup_create(actor=demo.bob, vm=vm, snapshot="s1", name="b1")
    with pytest.raises(ValidationError):
        backup_services.backup_create(actor=demo.bob, vm=vm, snapshot="s1", name="b1")
    # The snapshot is kept while it is exported.
    if Backup.objects.get(pk=backup.pk).phase != BackupPhase.READY:
        with pytest.raises(Conflict):
            snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=vm, name="s1")
    backup = wait_backup(backup, BackupPhase.READY)
    with pytest.raises(ValidationError):
        backup_services.backup_restore(actor=demo.bob, backup=backup, name="web1")  # taken
    with pytest.raises(PermissionDenied):
        backup_services.backup_restore(actor=demo.carol, backup=backup, name="back1")
    with pytest.raises(PermissionDenied):
        backup_services.backup_delete(actor=demo.bob, backup=backup)  # operators cannot
    assert Backup.objects.get(pk=backup.pk).phase == BackupPhase.READY

    folder = backup_services.backup_dir(backup)
    assert folder.is_dir()
    backup_services.backup_delete(actor=demo.alice, backup=backup)
    wait_for(lambda: not Backup.objects.exists(), 15, message="backup kept")
    assert not folder.exists()
    assert AuditLog.objects.filter(action="backup.delete", target="backup/b1").exists()


def test_a_backup_whose_task_was_lost_is_driven_again_by_the_sweep(
    demo, make_host, tiny_image, celery_worker, backup_dir, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from compute.tasks.volumes import volumes_sweep

    make_host()
    settings.ISOTOPE_STUCK_SECONDS = 1
    backup = ready_backup(demo)
    # An export whose worker died long ago, its files half written.
    old = timezone.now() - timedelta(seconds=30)
    backup_services.backup_files_remove(backup)
    Backup.objects.filter(pk=backup.pk).update(
        phase=BackupPhase.EXPORTING, progress=40, updated=old
    )
    backup.snapshots.set(Snapshot.objects.filter(vm=backup.vm, name="s1"))
    assert backup_services.backups_stale() == [backup]
    volumes_sweep()
    backup = wait_backup(backup, BackupPhase.READY)
    path = backup_services.disk_path(backup, backup.disks[0])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == backup.disks[0]["sha256"]
    assert backup_services.backups_stale() == []


def test_a_backup_file_must_be_a_standalone_image_of_its_disks_format(tmp_path):
    import subprocess

    from compute import imagefiles

    base, overlay, raw = tmp_path / "base.qcow2", tmp_path / "overlay.qcow2", tmp_path / "d.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    backup_services.check_standalone(base, "qcow2")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)],
        check=True,
    )
    with pytest.raises(imagefiles.ImageRefused, match="backing file"):
        backup_services.check_standalone(overlay, "qcow2")
    # A raw disk is its bytes, even when they start like text (a guest wrote a marker).
    raw.write_bytes(b"marker written by the guest\n".ljust(1024 * 1024, b"\0"))
    backup_services.check_standalone(raw, "raw")
    with pytest.raises(imagefiles.ImageRefused):
        backup_services.check_standalone(raw, "qcow2")


def test_one_backed_up_disk_is_restored_into_a_new_volume_and_attaches_to_a_vm(
    demo, make_host, tiny_image, celery_worker, backup_dir
):
    from compute.choices import VolumePhase
    from compute.services import volumes as volume_services
    from tests.compute.services.test_volumes import wait_volume

    make_host()
    backup = ready_backup(demo)
    used = used_storage(demo.acme)
    volume = backup_services.backup_restore_disk(
        actor=demo.bob, backup=backup, disk="vda", name="old-root"
    )
    # Charged at once, attached to nothing, made from the backup's file.
    assert used_storage(demo.acme) == used + 2
    assert (volume.vm, volume.created_from, volume.source_backup) == (
        None,
        VolumeSource.BACKUP,
        backup,
    )
    assert volume.source_name == "backup/b1/vda.qcow2"
    volume = wait_volume(volume, VolumePhase.READY)
    assert AuditLog.objects.filter(action="backup.restore", target="volume/old-root").exists()
    assert Event.objects.filter(kind="volume", name="old-root", reason="Restoring").exists()
    assert Event.objects.filter(
        kind="backup", name="b1", reason="RestoreRequested", message__contains="old-root"
    ).exists()
    # It attaches to a VM like any volume: the backed-up VM reads its old disk as vdb.
    volume_services.volume_attach(actor=demo.bob, volume=volume, vm=backup.vm)
    volume = wait_volume(volume, VolumePhase.ATTACHED)
    assert volume.device == "vdb"

    # A missing file: accepted, then the volume fails naming it; nothing else changes.
    backup_services.disk_path(backup, backup.disks[0]).unlink()
    lost = backup_services.backup_restore_disk(
        actor=demo.bob, backup=backup, disk="vda", name="lost-root"
    )
    lost = wait_volume(lost, VolumePhase.FAILED)
    assert "vda.qcow2" in lost.message
    assert Backup.objects.get(pk=backup.pk).phase == BackupPhase.READY

    # Bad input and roles change nothing.
    before = (Volume.objects.count(), used_storage(demo.acme))
    for disk, name in (("vdz", "d1"), ("vda", "Bad_Name"), ("vda", "old-root")):
        with pytest.raises(ValidationError):
            backup_services.backup_restore_disk(actor=demo.bob, backup=backup, disk=disk, name=name)
    with pytest.raises(PermissionDenied):
        backup_services.backup_restore_disk(actor=demo.carol, backup=backup, disk="vda", name="d1")
    assert (Volume.objects.count(), used_storage(demo.acme)) == before


def test_a_lone_volumes_snapshot_is_backed_up_and_restores_into_a_new_volume(
    demo, make_host, celery_worker, backup_dir
):
    from compute.choices import VolumePhase
    from tests.compute.services.test_snapshots import ready_volume
    from tests.compute.services.test_volumes import wait_volume

    make_host()
    volume = ready_volume(demo, size=3)
    snapshot = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    wait_snapshot(snapshot, SnapshotPhase.READY)
    # Not Ready (as while its copy runs): refused, nothing made.
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=SnapshotPhase.PENDING)
    with pytest.raises(Conflict):
        backup_services.volume_backup_create(
            actor=demo.bob, volume=volume, snapshot="s1", name="early"
        )
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=SnapshotPhase.READY)
    with pytest.raises(NotFound):
        backup_services.volume_backup_create(
            actor=demo.bob, volume=volume, snapshot="nope", name="b1"
        )
    with pytest.raises(PermissionDenied):
        backup_services.volume_backup_create(
            actor=demo.carol, volume=volume, snapshot="s1", name="b1"
        )
    assert not Backup.objects.exists()

    backup = backup_services.volume_backup_create(
        actor=demo.bob, volume=volume, snapshot="s1", name="b1"
    )
    backup = wait_backup(backup, BackupPhase.READY)
    (disk,) = backup.disks
    assert (disk["volume"], disk["device"], disk["file"], disk["sizeGiB"]) == (
        "data1",
        "",
        "data1.qcow2",
        3,
    )
    path = backup_dir / "acme" / str(backup.uid) / "data1.qcow2"
    assert disk["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert backup_services.backup_source(backup) == "data1"
    assert AuditLog.objects.filter(action="backup.create", target="backup/b1").exists()
    # A volume's backup has no VM to restore: only its disk comes back.
    assert backup_services.backup_actions(backup, "operator") == ["restore-disk"]
    with pytest.raises(Conflict, match="restore its disk"):
        backup_services.backup_restore(actor=demo.bob, backup=backup, name="vm1")
    assert not VirtualMachine.objects.exists()

    used = used_storage(demo.acme)
    restored = backup_services.backup_restore_disk(
        actor=demo.bob, backup=backup, disk="data1", name="data1-back"
    )
    assert used_storage(demo.acme) == used + 3
    restored = wait_volume(restored, VolumePhase.READY)
    assert restored.source_name == "backup/b1/data1.qcow2" and restored.vm is None
