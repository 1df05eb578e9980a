"""Backups on a real QEMU guest on libvirt node1 (qemu tier): a marker the guest writes
on its disk is in the VM snapshot, in the backup exported from it, and — after the
source VM and its snapshot are deleted — in a new VM restored from the backup, where the
guest reads it back. The restored disk, and that of a VM cloned from the same snapshot,
and a volume restored from the backup's one disk, are also compared with the backup file
on the host (``qemu-img compare``: the same content the guest sees)."""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import BackupPhase, Phase, SnapshotPhase, VolumePhase
from compute.models import Backup, Snapshot, VirtualMachine, Volume
from compute.services import backups as backup_services
from compute.services import clones
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from tests.compute.services.test_vm_lifecycle import wait_phase, wait_ready
from tests.compute.test_qemu_vms import node1  # noqa: F401 - the fixture
from tests.compute.test_qemu_volumes import guest_of, pool_cleanup  # noqa: F401
from tests.conftest import GUEST_BOOT_TIMEOUT, wait_for

pytestmark = pytest.mark.qemu


def assert_same_disk(host, exported, backend_name: str) -> None:
    """The pool volume ``backend_name`` holds what the file ``exported`` holds, as a
    guest sees it (``qemu-img compare``)."""
    pool = shared_connection(host.uri).storagePoolLookupByName("isotope-volumes")
    pool.refresh(0)
    on_host = pool.storageVolLookupByName(backend_name).path()
    compared = subprocess.run(
        [shutil.which("qemu-img"), "compare", "-f", "qcow2", "-F", "qcow2", str(exported), on_host],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_a_backup_restored_into_a_new_vm_holds_what_the_source_guest_wrote(
    demo,
    node1,  # noqa: F811
    pool_cleanup,  # noqa: F811
    celery_worker,
    settings,
    tmp_path,
):
    settings.ISOTOPE_BACKUP_DIR = str(tmp_path / "backups")
    name = f"qb-{secrets.token_hex(3)}"
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
    guest = guest_of(vm)
    marker = f"mark{secrets.token_hex(4)}"
    guest.until(
        f"echo {marker} | dd of=/dev/vda conv=fsync 2>/dev/null && sync && "
        "head -c 12 /dev/vda > /dev/ttyS0",
        marker,
    )
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED, timeout=300)

    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="before")
    for disk in group.disks:
        wait_for(
            lambda disk=disk: Snapshot.objects.get(pk=disk.pk).phase == SnapshotPhase.READY,
            300,
            message="snapshot not Ready",
        )
    backup = backup_services.backup_create(
        actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk), snapshot="before", name=name
    )
    wait_for(
        lambda: Backup.objects.get(pk=backup.pk).phase in (BackupPhase.READY, BackupPhase.FAILED),
        300,
        message="backup not exported",
    )
    backup = Backup.objects.select_related("tenant").get(pk=backup.pk)
    assert backup.phase == BackupPhase.READY, backup.message
    assert backup.progress == 100
    (disk,) = backup.disks
    exported = backup_services.disk_path(backup, disk)
    assert hashlib.sha256(exported.read_bytes()).hexdigest() == disk["sha256"]
    info = subprocess.run(
        [shutil.which("qemu-img"), "info", "--output=json", str(exported)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"format": "qcow2"' in info and "backing-filename" not in info

    # One disk of it back as a volume of its own, attached to nothing: the same content.
    single = backup_services.backup_restore_disk(
        actor=demo.bob, backup=backup, disk="vda", name=f"{name}-vda"
    )
    wait_for(
        lambda: Volume.objects.get(pk=single.pk).phase in (VolumePhase.READY, VolumePhase.FAILED),
        300,
        message="volume not restored",
    )
    single = Volume.objects.get(pk=single.pk)
    assert single.phase == VolumePhase.READY, single.message
    assert single.host == node1 and single.vm is None
    assert_same_disk(node1, exported, single.backend_name)

    # A clone made from the same snapshot holds the same disk (copied on the host).
    clone = clones.vm_clone(actor=demo.bob, vm=vm, name=f"{name}-snap", snapshot="before")
    clone = wait_phase(clone, Phase.STOPPED, timeout=300)
    assert_same_disk(node1, exported, Volume.objects.get(vm=clone).backend_name)

    # The source goes: its snapshot, then the VM and its disk.
    snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=vm, name="before")
    wait_for(lambda: not Snapshot.objects.exists(), 300, message="snapshot kept")
    vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 300, message="kept")

    restored = backup_services.backup_restore(
        actor=demo.bob, backup=backup, name=f"{name}-back", start=False
    )
    restored = wait_phase(restored, Phase.STOPPED, timeout=300)
    assert_same_disk(node1, exported, Volume.objects.get(vm=restored).backend_name)

    vm_services.vm_action(actor=demo.bob, vm=restored, action="start")
    restored = wait_ready(
        wait_phase(restored, Phase.RUNNING, timeout=300), timeout=GUEST_BOOT_TIMEOUT * 3
    )
    guest_of(restored).until("head -c 12 /dev/vda > /dev/ttyS0", marker)
    vm_services.vm_action(actor=demo.bob, vm=restored, action="force-stop")
    wait_phase(restored, Phase.STOPPED, timeout=300)
