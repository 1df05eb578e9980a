"""Backups: export a VM snapshot to the backup directory, restore one into a new VM.

    backup_create ─► Pending ─(task)─► Exporting (progress %) ─► Ready
                                            └──────────────────► Failed
    backup_delete (Ready/Failed) ─► Deleting ─(task: files removed)─► gone

The task (:func:`compute.tasks.backups.backup_apply`) streams each disk snapshot's file
from its host through libvirt's storage API into
``ISOTOPE_BACKUP_DIR/<tenant>/<backup uid>/<device>.<ext>``, then records the file's
size and sha256. A snapshot is a full, standalone copy of its disk, so each backup file
is a standalone image (no backing chain); ``qemu-img info`` confirms it before Ready.

A restore makes a *new* VM (new name) with the backed-up VM's image, size and restart
policy and one new volume per backed-up disk, its quota (cpu, memory, VM count and each
volume's storage) reserved in the one transaction that records them; the request reads
no file. The provisioning task checks every file first (:func:`vm_restore_verify`:
present, same sha256, a standalone image): a missing or corrupt file fails the restore
with a Warning event naming it, and the pending VM and its volumes are removed, their
quota released once. Then it writes each file into the new volume
(:func:`volume_from_backup`, checking the sha256 again as it does) before the VM is
defined.

Backups are not charged to the ``storage`` quota: it counts what the hosts' pools hold,
and backup files live outside them (README, "Backups").
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from compute import imagefiles
from compute.backends import BackendError, VolumeNotFound, pool_name
from compute.choices import (
    BackupPhase,
    Phase,
    VolumePhase,
    VolumeSource,
)
from compute.models import Backup, VirtualMachine, Volume
from compute.services import dispatch
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.services.clones import pending_vm
from compute.texts import backups as backup_texts
from monitoring.services import event_publish, resource_forget, resource_publish
from portal import sql
from portal.exceptions import Conflict, NotFound, QuotaExceeded, ValidationError
from tenants.choices import AuditOutcome, ReservationKind
from tenants.services import actor_name, audit_record, authorize, quota_reserve

logger = logging.getLogger(__name__)

BACKUP_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "restore": ("backup.restore", frozenset({BackupPhase.READY})),
    "restore-disk": ("backup.restore", frozenset({BackupPhase.READY})),
    "delete": ("backup.delete", frozenset({BackupPhase.READY, BackupPhase.FAILED})),
}


def backup_actions(backup: Backup, role: str | None) -> list[str]:
    """The backup buttons a user with ``role`` sees right now (a volume's backup has no
    VM to restore: only its disk)."""
    from tenants.permissions import role_allows

    return [
        name
        for name, (permission, phases) in BACKUP_ACTIONS.items()
        if backup.phase in phases
        and role_allows(role, permission)
        and (name != "restore" or is_vm_backup(backup))
    ]


def is_vm_backup(backup: Backup) -> bool:
    """A VM's backup (restores into a new VM) rather than one volume's."""
    return bool(backup.vm_spec)


def backup_dir(backup: Backup) -> Path:
    """Where the backup's files are (one directory per backup)."""
    return Path(settings.ISOTOPE_BACKUP_DIR) / backup.tenant.slug / str(backup.uid)


def disk_path(backup: Backup, disk: dict) -> Path:
    return backup_dir(backup) / disk["file"]


def _phase_error(action: str, phase: str) -> dict[str, list[str]]:
    """The field error of an action the backup's phase does not allow."""
    return {
        "phase": [
            gettext("%(action)s is not possible in phase %(phase)s.")
            % {"action": action, "phase": phase}
        ]
    }


# --- Create ----------------------------------------------------------------------------
def backup_create(*, actor, vm: VirtualMachine, snapshot: str, name: str) -> Backup:
    """Record a backup ``name`` of ``vm``'s snapshot ``snapshot`` (every disk of it
    Ready) and export it after commit. The snapshot is kept until the export ends."""

    def choose(name: str) -> dict:
        locked, disks = snapshot_services.vm_snapshot_ready(vm, str(snapshot))
        return {
            "snapshots": disks,
            "vm": locked,
            "detail": {"vm": locked.name, "snapshot": disks[0].name, "disks": len(disks)},
            "message": backup_texts.REQUESTED
            % {
                "backup": name,
                "snapshot": disks[0].name,
                "vm": locked.name,
                "actor": actor_name(actor),
            },
        }

    return _new_backup(actor, tenant=vm.tenant, name=name, choose=choose)


def volume_backup_create(*, actor, volume: Volume, snapshot: str, name: str) -> Backup:
    """Record a backup ``name`` of ``volume``'s Ready snapshot ``snapshot`` (one disk,
    attached or not) and export it after commit; it restores into a new volume
    (:func:`backup_restore_disk`). The snapshot is kept until the export ends."""

    def choose(name: str) -> dict:
        found = snapshot_services.ready_snapshot(
            volume, snapshot, what=snapshot_services.DONE_TO_DISKS["backed up"]
        )
        return {
            "snapshots": [found],
            "vm": None,
            "detail": {"volume": found.volume.name, "snapshot": found.name},
            "message": backup_texts.VOLUME_REQUESTED
            % {
                "backup": name,
                "snapshot": found.name,
                "volume": found.volume.name,
                "actor": actor_name(actor),
            },
        }

    return _new_backup(actor, tenant=volume.tenant, name=name, choose=choose)


def _new_backup(actor, *, tenant, name, choose) -> Backup:
    """Check the role and the name, then in one transaction ``choose(name)`` (which
    locks and checks the snapshots to export) and record the backup."""
    authorize(actor=actor, tenant=tenant, permission="backup.create", target=f"backup/{name}")
    errors: dict[str, list[str]] = {}
    name = snapshot_services._check_name(name, errors)
    if errors:
        raise ValidationError(gettext("The backup is not valid."), errors=errors)
    try:
        with transaction.atomic():
            return _record(actor, tenant=tenant, name=name, **choose(name))
    except IntegrityError:
        raise ValidationError(
            gettext("A backup with this name exists already."),
            errors={"name": [gettext("Taken.")]},
        ) from None


def _record(
    actor, *, tenant, name: str, snapshots: list, vm: VirtualMachine | None, detail, message
) -> Backup:
    """Inside a backup's transaction: its row (one disk entry per snapshot, a VM's with
    its device and the VM's spec), the snapshots kept, audit, event, and its export
    after commit."""
    if Backup.objects.filter(tenant=tenant, name=name).exists():
        raise ValidationError(
            gettext("A backup named %(name)s exists already.") % {"name": repr(name)},
            errors={"name": [gettext("Taken.")]},
        )
    vm_spec = {}
    if vm is not None:
        vm_spec = {
            "image": vm.image.name if vm.image_id else "",
            "vcpus": vm.vcpus,
            "memoryMiB": vm.memory_mib,
            "diskGiB": vm.disk_gib,
            "restartPolicy": vm.restart_policy,
        }
    disks = []
    for s in snapshots:
        device = s.volume.device if vm is not None else ""
        extension = "img" if s.volume.format == "raw" else "qcow2"
        disks.append(
            {
                "device": device,
                "volume": s.volume.name,
                "sizeGiB": s.size_gib,
                "format": s.volume.format,
                "file": f"{device or s.volume.name}.{extension}",
                "bytes": 0,
                "sha256": "",
            }
        )
    backup = Backup.objects.create(
        tenant=tenant,
        name=name,
        vm=vm,
        vm_name=vm.name if vm is not None else "",
        snapshot_name=snapshots[0].name,
        vm_spec=vm_spec,
        disks=disks,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    backup.snapshots.set(snapshots)
    audit_record(
        actor=actor, action="backup.create", tenant=tenant, target=f"backup/{name}", detail=detail
    )
    _event(backup, "BackupRequested", message)
    _publish(backup)
    transaction.on_commit(lambda: _enqueue(backup))
    return backup


def backup_source(backup: Backup) -> str:
    """What a backup was made from, as its pages name it: ``vm`` or ``volume``."""
    return backup.vm_name or (backup.disks[0]["volume"] if backup.disks else "")


# --- Delete ----------------------------------------------------------------------------
def backup_delete(*, actor, backup: Backup) -> Backup:
    """Mark a backup Deleting; the task removes its files, then the row goes."""
    authorize(
        actor=actor,
        tenant=backup.tenant,
        permission="backup.delete",
        target=f"backup/{backup.name}",
    )
    with transaction.atomic():
        backup = _locked(backup)
        if backup.phase not in BACKUP_ACTIONS["delete"][1]:
            raise Conflict(
                gettext("Cannot delete backup %(backup)s while it is %(phase)s.")
                % {"backup": backup.name, "phase": backup.phase},
                errors=_phase_error("delete", backup.phase),
            )
        reading = list(
            Volume.objects.filter(source_backup=backup, phase=VolumePhase.PENDING).values_list(
                "name", flat=True
            )
        )
        if reading:
            raise Conflict(
                gettext(
                    "Backup %(backup)s is being restored into %(volumes)s: delete it once "
                    "that is done."
                )
                % {"backup": backup.name, "volumes": ", ".join(reading)},
                errors={"phase": [gettext("Being restored.")]},
            )
        backup = _save(backup, phase=BackupPhase.DELETING, phase_changed=timezone.now())
        audit_record(
            actor=actor,
            action="backup.delete",
            tenant=backup.tenant,
            target=f"backup/{backup.name}",
            detail={"vm": backup.vm_name, "bytes": backup.size_bytes},
        )
        _event(
            backup, "BackupDeleting", backup_texts.DELETE_REQUESTED % {"actor": actor_name(actor)}
        )
        _publish(backup)
        transaction.on_commit(lambda: _enqueue(backup))
    return backup


def backup_finalize_delete(backup: Backup) -> None:
    """The files are gone: drop the row, once."""
    with transaction.atomic():
        deleted, _ = Backup.objects.filter(pk=backup.pk).delete()
        if not deleted:
            return
        _event(backup, "BackupDeleted", backup_texts.DELETED % {"backup": backup.name})
        resource_forget(tenant=backup.tenant, kind="backup", name=backup.name)


# --- Restore into a new VM ---------------------------------------------------------------
def backup_problems(backup: Backup) -> list[str]:
    """What is wrong with the backup's files: each must be there, have the sha256
    recorded when it was written, and be a standalone image (empty: all is well). Reads
    every file whole: the restore task calls it, never a request."""
    problems: list[str] = []
    for disk in backup.disks:
        path = disk_path(backup, disk)
        if not path.is_file():
            problems.append(backup_texts.FILE_MISSING % {"file": disk["file"]})
            continue
        if imagefiles.sha256_file(path, lambda done, total: None) != disk.get("sha256"):
            problems.append(backup_texts.FILE_CORRUPT % {"file": disk["file"]})
            continue
        try:
            check_standalone(path, disk.get("format") or "qcow2")
        except imagefiles.ImageRefused as error:
            problems.append(f"{disk['file']}: {error}")
    return problems


def check_standalone(path: Path, fmt: str) -> None:
    """A qcow2 backup file is a qcow2 image with no backing or external data file
    (``qemu-img info``); ``ImageRefused`` otherwise. A raw file is its disk's bytes
    (whatever they look like: no header to check, nothing it could point at)."""
    if fmt == "raw":
        return
    info = imagefiles.inspect(path, min_raw_bytes=1, max_virtual_bytes=2**63)
    if info.format != fmt:
        raise imagefiles.ImageRefused(
            backup_texts.NOT_THE_FORMAT % {"found": info.format, "format": fmt}
        )


def backup_restore(*, actor, backup: Backup, name: str, start: bool = False) -> VirtualMachine:
    """A new VM ``name`` with the backed-up VM's image and size and one new volume per
    backed-up disk, charged to the quota in the transaction that records it; its
    provisioning task checks the backup's files (:func:`vm_restore_verify`), fills the
    disks from them, and starts it when ``start``. The request itself only checks that
    the backup is Ready and the quota: reading the files whole is the task's work."""
    tenant = backup.tenant
    authorize(actor=actor, tenant=tenant, permission="backup.restore", target=f"vm/{name}")
    authorize(actor=actor, tenant=tenant, permission="vm.create", target=f"vm/{name}")
    if backup.phase != BackupPhase.READY:
        raise Conflict(
            gettext("Backup %(backup)s is %(phase)s: only a Ready one restores.")
            % {"backup": backup.name, "phase": backup.phase},
            errors=_phase_error("restore", backup.phase),
        )
    if not is_vm_backup(backup):
        raise Conflict(
            gettext(
                "Backup %(backup)s holds volume %(volume)s, not a VM: restore its disk "
                "into a new volume."
            )
            % {"backup": backup.name, "volume": backup_source(backup)},
            errors={"backup": [gettext("A volume's backup.")]},
        )
    spec = backup.vm_spec
    image, vcpus, memory_mib, disk_gib = vm_services._validate_create(
        tenant=tenant,
        name=name,
        image=spec.get("image"),
        vcpus=spec.get("vcpus"),
        memory_mib=spec.get("memoryMiB"),
        disk_gib=spec.get("diskGiB"),
        restart_policy=spec.get("restartPolicy"),
    )
    uid = uuid.uuid4()
    try:
        with transaction.atomic():
            backup = _locked(backup)
            if backup.phase != BackupPhase.READY:
                raise Conflict(
                    gettext("Backup %(backup)s is %(phase)s: only a Ready one restores.")
                    % {"backup": backup.name, "phase": backup.phase},
                    errors=_phase_error("restore", backup.phase),
                )
            storage = sum(int(d["sizeGiB"]) for d in backup.disks)
            vm = pending_vm(
                actor=actor,
                tenant=tenant,
                uid=uid,
                name=name,
                vcpus=vcpus,
                memory_mib=memory_mib,
                disk_gib=disk_gib,
                image=image,
                storage_gib=storage,
                start=start,
                restart_policy=spec.get("restartPolicy"),
            )
            volumes = [_disk_from_backup(actor, vm, backup, disk) for disk in backup.disks]
            audit_record(
                actor=actor,
                action="backup.restore",
                tenant=tenant,
                target=f"vm/{name}",
                detail={
                    "backup": backup.name,
                    "disks": {v.device: v.name for v in volumes},
                    "storage_gib": storage,
                    "host": vm.host.name,
                },
            )
            event_publish(
                tenant=tenant,
                kind="vm",
                name=vm.name,
                uid=str(vm.uid),
                reason="Restoring",
                message=backup_texts.RESTORE_ACCEPTED
                % {"backup": backup.name, "vm": backup.vm_name, "actor": actor_name(actor)},
            )
            _event(backup, "RestoreRequested", backup_texts.RESTORE_REQUESTED % {"vm": name})
            vm_services._publish(vm)
            transaction.on_commit(lambda: dispatch.provision_request(vm.pk))
    except IntegrityError:
        raise ValidationError(
            gettext("A VM with this name exists already."), errors={"name": [gettext("Taken.")]}
        ) from None
    except QuotaExceeded as error:
        _event(
            backup,
            "QuotaExceeded",
            backup_texts.RESTORE_QUOTA_EXCEEDED % {"vm": name, "error": error.stored_message},
            "Warning",
        )
        raise
    return vm


def disk_key(disk: dict) -> str:
    """How a restore names one of a backup's disks: its device in the VM (``vdb``), or
    the volume's name for a volume's backup."""
    return disk["device"] or disk["volume"]


def backup_restore_disk(*, actor, backup: Backup, disk: str, name: str) -> Volume:
    """A new volume ``name``, attached to nothing, holding the backed-up disk ``disk``
    (:func:`disk_key`: its device when backed up, e.g. ``vdb``, or the volume's name
    for a volume's backup): one file brought back without restoring
    the whole VM. Charged its size in ``storage`` in the transaction that records it and
    placed like any new volume; its task checks the file's sha256 and writes it
    (:func:`volume_from_backup`). A missing or corrupt file leaves the volume Failed
    with the file named; nothing else changes."""
    tenant = backup.tenant
    authorize(actor=actor, tenant=tenant, permission="backup.restore", target=f"volume/{name}")
    authorize(actor=actor, tenant=tenant, permission="volume.create", target=f"volume/{name}")
    errors: dict[str, list[str]] = {}
    name = volume_services._check_name(tenant, name, errors)
    entry = next((d for d in backup.disks if disk and disk_key(d) == disk), None)
    if entry is None:
        errors["disk"] = [
            gettext("Choose one of the backup's disks: %(disks)s.")
            % {"disks": ", ".join(disk_key(d) for d in backup.disks)}
        ]
    if errors:
        raise ValidationError(gettext("The volume is not valid."), errors=errors)
    uid = uuid.uuid4()
    size = int(entry["sizeGiB"])
    fmt = entry.get("format") or "qcow2"
    arguments = {"disk": disk, "volume": name, "backup": backup.name, "vm": backup_source(backup)}
    try:
        with transaction.atomic():
            backup = _locked(backup)
            if backup.phase != BackupPhase.READY:
                raise Conflict(
                    gettext("Backup %(backup)s is %(phase)s: only a Ready one restores.")
                    % {"backup": backup.name, "phase": backup.phase},
                    errors=_phase_error("restore", backup.phase),
                )
            quota_reserve(
                tenant=tenant,
                ref=f"volume:{uid}",
                storage=size,
                kind=ReservationKind.VOLUME,
                object_id=str(uid),
            )
            from compute.scheduler import schedule_volume

            host = schedule_volume(size_gib=size)
            volume = Volume.objects.create(
                uid=uid,
                tenant=tenant,
                name=name,
                size_gib=size,
                format=fmt,
                phase=VolumePhase.PENDING,
                created_from=VolumeSource.BACKUP,
                source_backup=backup,
                source_name=f"backup/{backup.name}/{entry['file']}",
                host=host,
                pool=pool_name(),
                backend_name=volume_services._file_name(uid, fmt),
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            detail = {"backup": backup.name, "disk": disk, "size_gib": size, "host": host.name}
            for action in ("backup.restore", "volume.create"):
                audit_record(
                    actor=actor,
                    action=action,
                    tenant=tenant,
                    target=f"volume/{name}",
                    detail=detail,
                )
            event_publish(
                tenant=tenant,
                kind=volume_services.EVENT_KIND,
                name=name,
                uid=str(uid),
                reason="Restoring",
                message=backup_texts.DISK_RESTORE_ACCEPTED
                % {**arguments, "actor": actor_name(actor)},
            )
            _event(backup, "RestoreRequested", backup_texts.DISK_RESTORE_REQUESTED % arguments)
            volume_services._publish(volume)
            transaction.on_commit(lambda: volume_services._enqueue(volume))
    except IntegrityError:
        raise ValidationError(
            gettext("A volume with this name exists already."), errors={"name": [gettext("Taken.")]}
        ) from None
    except QuotaExceeded as error:
        _event(
            backup,
            "QuotaExceeded",
            backup_texts.DISK_RESTORE_QUOTA_EXCEEDED % {**arguments, "error": error.stored_message},
            "Warning",
        )
        raise
    return volume


def _disk_from_backup(actor, vm: VirtualMachine, backup: Backup, disk: dict) -> Volume:
    """Inside the restore's transaction: the new volume of ``vm`` at the backed-up
    disk's device, charged its size."""
    uid = uuid.uuid4()
    size = int(disk["sizeGiB"])
    quota_reserve(
        tenant=vm.tenant,
        ref=f"volume:{uid}",
        storage=size,
        kind=ReservationKind.VOLUME,
        object_id=str(uid),
    )
    device = disk["device"] or volume_services.ROOT_DEVICE
    is_root = device == volume_services.ROOT_DEVICE
    volume = Volume.objects.create(
        uid=uid,
        tenant=vm.tenant,
        name=volume_services.root_volume_name(vm.name, vm.tenant, "root" if is_root else device),
        size_gib=size,
        format=disk.get("format") or "qcow2",
        phase=VolumePhase.PENDING,
        created_from=VolumeSource.BACKUP,
        source_backup=backup,
        source_name=f"backup/{backup.name}/{disk['file']}",
        vm=vm,
        device=device,
        delete_with_vm=True,
        host=vm.host,
        pool=pool_name(),
        backend_name=volume_services._file_name(uid, disk.get("format") or "qcow2"),
        created_by=vm.created_by,
    )
    audit_record(
        actor=actor,
        action="volume.create",
        tenant=vm.tenant,
        target=f"volume/{volume.name}",
        detail={"backup": backup.name, "file": disk["file"], "size_gib": size, "vm": vm.name},
    )
    volume_services._publish(volume)
    return volume


def vm_restore_verify(vm: VirtualMachine, backend) -> bool:
    """The provisioning task's first step for a VM restored from a backup, before any
    disk is written: every file of the backup checked (:func:`backup_problems`). True
    when all is well (or the VM restores nothing). On a problem the restore fails: a
    Warning event on the backup and on the VM naming each file, then the pending VM
    and its volumes are removed as a delete would (quota released once: a redelivered
    task finds no VM); returns False, and provisioning stops."""
    restoring = [vm.pk, VolumeSource.BACKUP, VolumePhase.PENDING]
    if not sql.exists(Volume, "vm_id = %s AND created_from = %s AND phase = %s", restoring):
        return True  # every provisioning asks; few restore: written out (portal.sql)
    pending = list(
        Volume.objects.filter(
            vm=vm, created_from=VolumeSource.BACKUP, phase=VolumePhase.PENDING
        ).select_related("source_backup__tenant")
    )
    if not pending:
        return True
    backups = {v.source_backup_id: v.source_backup for v in pending if v.source_backup}
    problems = [problem for backup in backups.values() for problem in backup_problems(backup)]
    if any(v.source_backup is None for v in pending):
        problems.append(backup_texts.BACKUP_DELETED)
    if not problems:
        return True
    text = " ".join(problems)
    names = ", ".join(sorted(b.name for b in backups.values()))
    for backup in backups.values():
        _event(
            backup,
            "RestoreFailed",
            backup_texts.RESTORE_INTO_FAILED % {"vm": vm.name, "problems": text},
            "Warning",
        )
    arguments = {"backups": names, "problems": text}
    if names:
        message, removed = (
            backup_texts.RESTORE_FROM_FAILED,
            backup_texts.RESTORE_FROM_FAILED_REMOVED,
        )
    else:  # every backup it was restored from is deleted
        message, removed = (
            backup_texts.RESTORE_FROM_DELETED_FAILED,
            backup_texts.RESTORE_FROM_DELETED_FAILED_REMOVED,
        )
    vm_services.vm_observe(
        vm,
        Phase.FAILED,
        message % arguments,
        reason="RestoreFailed",
        event_type="Warning",
        event_message=removed % arguments,
    )
    audit_record(
        actor=None,
        action="backup.restore",
        tenant=vm.tenant,
        target=f"vm/{vm.name}",
        outcome=AuditOutcome.FAILED,
        detail={"backups": sorted(b.name for b in backups.values()), "problems": problems},
    )
    vm_services.vm_finalize_delete(vm, backend)
    return False


def volume_from_backup(volume: Volume, backend):
    """The provisioning task's step for a volume restored from a backup: write the
    backup's file into it (its sha256 checked again first; safe to repeat: a volume
    written once is kept)."""
    try:
        return backend.volume_info(volume.pool, volume.backend_name)
    except VolumeNotFound:
        if volume.phase != VolumePhase.PENDING:
            raise BackendError(backup_texts.VOLUME_STORAGE_GONE % {"volume": volume.name}) from None
    backup = volume.source_backup
    if backup is None:
        raise BackendError(backup_texts.VOLUME_BACKUP_GONE % {"volume": volume.name})
    # The file it was made from (``backup/<backup>/<file>``); volumes of a VM restored
    # before that was recorded are found by their device.
    file = volume.source_name.rsplit("/", 1)[-1]
    disk = next((d for d in backup.disks if d["file"] == file), None) or next(
        (d for d in backup.disks if d["device"] == volume.device), None
    )
    if disk is None:
        raise BackendError(
            backup_texts.VOLUME_NO_DISK
            % {"volume": volume.name, "backup": backup.name, "device": volume.device}
        )
    path = disk_path(backup, disk)
    if not path.is_file():
        raise BackendError(
            backup_texts.VOLUME_FILE_MISSING
            % {"volume": volume.name, "file": disk["file"], "backup": backup.name}
        )
    if imagefiles.sha256_file(path, lambda done, total: None) != disk.get("sha256"):
        raise BackendError(
            backup_texts.VOLUME_FILE_CORRUPT
            % {"volume": volume.name, "file": disk["file"], "backup": backup.name}
        )
    return backend.volume_import(volume_services.volume_spec(volume), path, lambda d, t: None)


# --- Observed state (task) -------------------------------------------------------------
def _locked(backup: Backup) -> Backup:
    found = Backup.locked(backup.pk, "tenant")
    if found is None:
        raise NotFound(gettext("Backup %(backup)s not found.") % {"backup": repr(backup.name)})
    return found


def _save(backup: Backup, **fields) -> Backup:
    Backup.objects.filter(pk=backup.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    backup.refresh_from_db()
    return backup


def backup_exporting(backup: Backup) -> Backup | None:
    """The task starts (or, after a lost worker, restarts) the export: Exporting at
    0 %. None when the backup is no longer Pending or Exporting."""
    with transaction.atomic():
        current = Backup.locked(backup.pk, "tenant")
        if current is None or current.phase not in (BackupPhase.PENDING, BackupPhase.EXPORTING):
            return None
        disks = [{**d, "bytes": 0, "sha256": ""} for d in current.disks]
        current = _save(
            current,
            phase=BackupPhase.EXPORTING,
            progress=0,
            size_bytes=0,
            disks=disks,
            message="",
            phase_changed=timezone.now(),
        )
        _event(current, "Exporting", backup_texts.EXPORTING % {"disks": len(disks)})
        _publish(current)
        return current


def backup_progress(backup: Backup, percent: int) -> Backup:
    """Write the export's progress as a compare-and-set on the version the task last
    saw, and push it live; a backup changed meanwhile (e.g. deleted) is left alone."""
    percent = max(0, min(100, int(percent)))
    with transaction.atomic():
        changed = Backup.objects.filter(
            pk=backup.pk,
            resource_version=backup.resource_version,
            phase=BackupPhase.EXPORTING,
        ).update(
            progress=percent,
            updated=timezone.now(),
            resource_version=F("resource_version") + 1,
        )
        if changed:
            backup.refresh_from_db()
            _publish(backup)
    return backup


def backup_ready(backup: Backup, disks: list[dict]) -> Backup | None:
    """Every file is written and checked: Ready, with each file's size and sha256."""
    with transaction.atomic():
        current = Backup.locked(backup.pk, "tenant")
        if current is None or current.phase != BackupPhase.EXPORTING:
            return None
        total = sum(d["bytes"] for d in disks)
        current = _save(
            current,
            phase=BackupPhase.READY,
            progress=100,
            disks=disks,
            size_bytes=total,
            message="",
            phase_changed=timezone.now(),
        )
        current.snapshots.clear()  # the snapshots may be deleted from now on
        _event(
            current,
            "BackupReady",
            backup_texts.READY
            % {"backup": current.name, "files": len(disks), "bytes": f"{total:,}"},
        )
        _publish(current)
        return current


def backup_failed(backup: Backup, message: str) -> None:
    """The export failed (its files were removed): Failed with the reason."""
    with transaction.atomic():
        current = Backup.locked(backup.pk, "tenant")
        if current is None or current.phase not in (BackupPhase.PENDING, BackupPhase.EXPORTING):
            return
        current = _save(
            current,
            phase=BackupPhase.FAILED,
            message=message[:1000],
            phase_changed=timezone.now(),
        )
        current.snapshots.clear()
        _event(current, "BackupFailed", message, "Warning")
        _publish(current)


def backup_files_remove(backup: Backup) -> None:
    shutil.rmtree(backup_dir(backup), ignore_errors=True)


# --- Lost tasks ------------------------------------------------------------------------
def backups_stale() -> list[Backup]:
    """Backups still Pending, Exporting or Deleting ``ISOTOPE_STUCK_SECONDS`` after their
    last write (an export writes its progress as it goes) with no task holding them:
    their task was lost."""
    from datetime import timedelta

    from django.core.cache import cache

    from compute.tasks.backups import backup_lock_key

    cutoff = timezone.now() - timedelta(seconds=settings.ISOTOPE_STUCK_SECONDS)
    rows = Backup.objects.filter(
        phase__in=[BackupPhase.PENDING, BackupPhase.EXPORTING, BackupPhase.DELETING],
        updated__lt=cutoff,
    ).select_related("tenant")
    return [b for b in rows if cache.get(backup_lock_key(b.pk)) is None]


def backups_redrive() -> list[int]:
    """Enqueue the task of every stale backup (beat, with the volume sweep)."""
    stale = backups_stale()
    for backup in stale:
        _enqueue(backup)
    return [b.pk for b in stale]


# --- Live state ------------------------------------------------------------------------
def backup_state(backup: Backup) -> dict:
    """What the Backups page needs to redraw one row."""
    return {
        "name": backup.name,
        "vm": backup_source(backup),
        "snapshot": backup.snapshot_name,
        "phase": backup.phase,
        "message": backup.message,
        "progress": backup.progress,
        "sizeBytes": backup.size_bytes,
        "created": backup.created.isoformat(),
        "uid": str(backup.uid),
        "resourceVersion": str(backup.resource_version),
        "actionsByRole": {
            role: backup_actions(backup, role) for role in ("viewer", "operator", "admin")
        },
    }


def _publish(backup: Backup) -> None:
    resource_publish(
        tenant=backup.tenant, kind="backup", name=backup.name, data=backup_state(backup)
    )


def _event(backup: Backup, reason: str, message: str, event_type: str = "Normal") -> None:
    event_publish(
        tenant=backup.tenant,
        kind="backup",
        name=backup.name,
        uid=str(backup.uid),
        type=event_type,
        reason=reason,
        message=message,
    )


def _enqueue(backup: Backup) -> None:
    from compute.tasks import backups as tasks

    tasks.backup_apply.delay(backup.pk)
