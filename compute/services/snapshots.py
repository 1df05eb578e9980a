"""Volume snapshots (take, restore, delete) and volume clones.

A snapshot is an independent full copy of a local volume in its host's pool (see
:mod:`compute.models.snapshots` for why a copy and not a qcow2 snapshot chain). It is
taken only while nothing writes to the volume: the volume is detached, or its VM is
stopped, so the copy is consistent without a guest agent. Restoring copies the data
back over the volume, again only while its VM is stopped, and asks for the volume's
name as confirmation: what the volume holds now is lost.

Quota: a snapshot holds one reservation, ``snapshot:<uid>``, of ``storage`` = the
volume's size when taken, reserved in the transaction that records it and released
once when its copy is gone. A clone is a new volume (``volume:<uid>`` as any volume).

Every write is a row-locked read-modify-write bumping ``resource_version``; the task
:func:`compute.tasks.snapshots.snapshot_apply` does the backend work after commit and
reports through :func:`snapshot_observe`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy

from compute.backends import BackendError, TransientBackendError, VolumeSpec
from compute.choices import Phase, SnapshotPhase, StorageClass, VolumePhase, VolumeSource
from compute.models import Snapshot, VirtualMachine, Volume
from compute.services import readiness
from compute.services import volumes as volume_services
from compute.texts import snapshots as snapshot_texts
from monitoring.services import event_publish, resource_forget, resource_publish
from portal.exceptions import Conflict, NotFound, QuotaExceeded, ValidationError
from tenants.choices import ReservationKind
from tenants.services import actor_name, audit_record, authorize, quota_release, quota_reserve

EVENT_KIND = "volume"  # snapshots speak on their volume's timeline
# A volume is copied (to a snapshot or a clone) or restored only in these phases.
QUIET_VOLUME_PHASES = frozenset({VolumePhase.READY, VolumePhase.ATTACHED})
# What is done to the disks, as the refusals word it in the reader's language.
DONE_TO_DISKS = {
    "snapshotted": pgettext_lazy("done to disks", "snapshotted"),
    "restored": pgettext_lazy("done to disks", "restored"),
    "cloned": pgettext_lazy("done to disks", "cloned"),
    "copied": pgettext_lazy("done to disks", "copied"),
    "backed up": pgettext_lazy("done to disks", "backed up"),
}
# A Failed volume (a restore that failed half-way, or any other failure) can be restored
# from its snapshot: that is how it is repaired.
RESTORABLE_VOLUME_PHASES = QUIET_VOLUME_PHASES | {VolumePhase.FAILED}
# A VM's disks are snapshotted together while it is in one of these phases (Running and
# Paused: live, its disks copied as they were at one moment).
LIVE_SNAPSHOT_PHASES = frozenset({Phase.STOPPED, Phase.RUNNING, Phase.PAUSED})

SNAPSHOT_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "restore": ("snapshot.restore", frozenset({SnapshotPhase.READY})),
    "delete": ("snapshot.delete", frozenset({SnapshotPhase.READY, SnapshotPhase.FAILED})),
    "backup": ("backup.create", frozenset({SnapshotPhase.READY})),
}


def snapshot_actions(snapshot: Snapshot, role: str | None) -> list[str]:
    """The snapshot buttons a user with ``role`` sees right now."""
    from tenants.permissions import role_allows

    return [
        name
        for name, (permission, phases) in SNAPSHOT_ACTIONS.items()
        if snapshot.phase in phases and role_allows(role, permission)
    ]


def _file_name(uid: uuid.UUID, fmt: str) -> str:
    return f"snap-{uid}.{'img' if fmt == 'raw' else 'qcow2'}"


def _check_name(name, errors: dict) -> str:
    name = str(name or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 63 or not volume_services.NAME_RE.fullmatch(name):
        errors["name"] = [
            "Use at most 63 lowercase letters, digits and hyphens, starting and ending "
            "with a letter or digit (a DNS label)."
        ]
    return name


def _quiet(volume: Volume, what: str, phases: frozenset = QUIET_VOLUME_PHASES) -> None:
    """``Conflict`` unless nothing writes to ``volume`` now (call with it and its VM
    locked): it is in ``phases`` (Ready or Attached), attached to no VM or a stopped one."""
    if not volume.local:
        raise Conflict(
            gettext("%(volume)s is a Kubernetes volume: only local volumes can be %(what)s.")
            % {"volume": volume.name, "what": DONE_TO_DISKS.get(what, what)},
            errors={"storage_class": [gettext("Not a local volume.")]},
        )
    if volume.phase not in phases:
        raise Conflict(
            gettext(snapshot_texts.VOLUME_NOT_QUIET)
            % {
                "volume": volume.name,
                "phase": volume.phase,
                "what": DONE_TO_DISKS.get(what, what),
                "phases": gettext(" or ").join(
                    p
                    for p in (VolumePhase.READY, VolumePhase.ATTACHED, VolumePhase.FAILED)
                    if p in phases
                ),
            },
            errors={
                "phase": [gettext("Not possible in phase %(phase)s.") % {"phase": volume.phase}]
            },
        )
    if volume.vm_id is not None:
        vm = VirtualMachine.objects.select_for_update(of=("self",)).get(pk=volume.vm_id)
        if vm.phase != Phase.STOPPED:
            raise Conflict(
                gettext(snapshot_texts.VOLUME_VM_NOT_STOPPED)
                % {
                    "volume": volume.name,
                    "vm": vm.name,
                    "phase": vm.phase,
                    "what": DONE_TO_DISKS.get(what, what),
                },
                errors={
                    "vm": [
                        gettext("%(vm)s is %(phase)s; stop it first.")
                        % {"vm": vm.name, "phase": vm.phase}
                    ]
                },
            )


def _refused(tenant, name: str, error: QuotaExceeded) -> None:
    event_publish(
        tenant=tenant,
        kind=EVENT_KIND,
        name=name,
        type="Warning",
        reason="QuotaExceeded",
        message=error.stored_message,
    )


# --- Take ------------------------------------------------------------------------------
def snapshot_create(*, actor, volume: Volume, name: str, schedule=None) -> Snapshot:
    """Record a snapshot of ``volume`` (Ready, or its VM stopped) and reserve its size
    in ``storage``; the task copies the data after commit. Nothing is saved or reserved
    when a check fails; a quota refusal is also a Warning event. ``schedule``: the
    :class:`~compute.models.SnapshotSchedule` taking it (its retention applies)."""
    authorize(
        actor=actor,
        tenant=volume.tenant,
        permission="snapshot.create",
        target=f"volume/{volume.name}",
    )
    errors: dict[str, list[str]] = {}
    name = _check_name(name, errors)
    if errors:
        raise ValidationError(gettext("The snapshot is not valid."), errors=errors)
    try:
        with transaction.atomic():
            volume = volume_services._locked(volume)
            _quiet(volume, "snapshotted")
            snapshot = _take(actor, volume, name, schedule=schedule)
    except IntegrityError:
        raise ValidationError(
            gettext(snapshot_texts.SNAPSHOT_EXISTS),
            errors={"name": [gettext("Taken.")]},
        ) from None
    except QuotaExceeded as error:
        _refused(volume.tenant, volume.name, error)
        raise
    return snapshot


def _take(
    actor,
    volume: Volume,
    name: str,
    vm: VirtualMachine | None = None,
    schedule=None,
    *,
    live: bool = False,
    memory_gib: int = 0,
) -> Snapshot:
    """Inside a transaction, ``volume`` locked and quiet (or, ``live``, its VM running):
    reserve, record, enqueue. ``memory_gib``: this row also carries the VM's memory
    state, charged with the copy."""
    if Snapshot.objects.filter(volume=volume, name=name).exists():
        raise ValidationError(
            gettext(snapshot_texts.NAME_TAKEN) % {"volume": volume.name, "name": repr(name)},
            errors={"name": [gettext("Taken.")]},
        )
    uid = uuid.uuid4()
    quota_reserve(
        tenant=volume.tenant,
        ref=f"snapshot:{uid}",
        storage=volume.size_gib + memory_gib,
        kind=ReservationKind.VOLUME,
        object_id=str(uid),
    )
    snapshot = Snapshot.objects.create(
        live=live,
        memory_gib=memory_gib,
        memory_name=f"mem-{uid}.save" if memory_gib else "",
        uid=uid,
        tenant=volume.tenant,
        volume=volume,
        vm=vm,
        schedule=schedule,
        name=name,
        size_gib=volume.size_gib,
        host=volume.host,
        pool=volume.pool,
        backend_name=_file_name(uid, volume.format),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    arguments = {"snapshot": name, "size_gib": volume.size_gib, "actor": actor_name(actor)}
    if vm is None:
        message = snapshot_texts.TAKE_REQUESTED % arguments
    elif memory_gib:
        message = snapshot_texts.TAKE_MEMORY_REQUESTED % {
            **arguments,
            "vm": vm.name,
            "memory_gib": memory_gib,
        }
    elif live:
        message = snapshot_texts.TAKE_LIVE_REQUESTED % {**arguments, "vm": vm.name}
    else:
        message = snapshot_texts.TAKE_WITH_VM_REQUESTED % {**arguments, "vm": vm.name}
    _requested(
        actor, snapshot, action="snapshot.create", reason="SnapshotRequested", message=message
    )
    _volume_actions_changed(volume)  # locked by the caller: as it is now
    return snapshot


# --- Restore ---------------------------------------------------------------------------
def snapshot_restore(*, actor, snapshot: Snapshot, confirm: str) -> Snapshot:
    """Copy ``snapshot``'s data back over its volume, whose current data is lost.

    ``confirm`` must be the volume's name. Refused while the volume's VM is not
    stopped; the volume is ``Restoring`` (and its VM cannot start) until the copy is
    back."""
    volume = snapshot.volume
    authorize(
        actor=actor,
        tenant=snapshot.tenant,
        permission="snapshot.restore",
        target=f"volume/{volume.name}/snapshot/{snapshot.name}",
    )
    if str(confirm or "").strip() != volume.name:
        raise ValidationError(
            gettext(
                "Type the volume's name, %(volume)s, to confirm: its current data is replaced "
                "by the snapshot's."
            )
            % {"volume": volume.name},
            errors={"confirm": [gettext("Type %(volume)s to confirm.") % {"volume": volume.name}]},
        )
    with transaction.atomic():
        # Lock order volume → VM → snapshot.
        volume = volume_services._locked(volume)
        _quiet(volume, "restored", RESTORABLE_VOLUME_PHASES)
        snapshot = _restore(actor, volume, _locked(snapshot))
        if volume.vm_id is not None:
            # One disk rewritten: a memory state restored before no longer matches it.
            VirtualMachine.objects.filter(pk=volume.vm_id, resume_from__isnull=False).update(
                resume_from=None,
                updated=timezone.now(),
                resource_version=F("resource_version") + 1,
            )
    return snapshot


def _restore(actor, volume: Volume, snapshot: Snapshot) -> Snapshot:
    """Inside a transaction, ``volume`` and ``snapshot`` locked, ``volume`` quiet."""
    if snapshot.phase != SnapshotPhase.READY:
        raise Conflict(
            gettext("Snapshot %(snapshot)s is %(phase)s: only a Ready one restores.")
            % {"snapshot": snapshot.name, "phase": snapshot.phase},
            errors={
                "phase": [
                    gettext("restore is not possible in phase %(phase)s.")
                    % {"phase": snapshot.phase}
                ]
            },
        )
    volume_services._save(
        volume,
        phase=VolumePhase.RESTORING,
        message=snapshot_texts.RESTORING % {"snapshot": snapshot.name},
        phase_changed=timezone.now(),
    )
    volume_services._publish(volume)
    snapshot = _save(snapshot, phase=SnapshotPhase.RESTORING, phase_changed=timezone.now())
    _requested(
        actor,
        snapshot,
        action="snapshot.restore",
        reason="RestoreRequested",
        message=snapshot_texts.RESTORE_REQUESTED
        % {"snapshot": snapshot.name, "actor": actor_name(actor)},
    )
    return snapshot


# --- Delete ----------------------------------------------------------------------------
def snapshot_delete(*, actor, snapshot: Snapshot) -> Snapshot:
    """Mark a snapshot Deleting; the task removes its copy, then the row goes and its
    quota is released, once. Other snapshots and the volume are untouched."""
    authorize(
        actor=actor,
        tenant=snapshot.tenant,
        permission="snapshot.delete",
        target=f"volume/{snapshot.volume.name}/snapshot/{snapshot.name}",
    )
    with transaction.atomic():
        return _delete(actor, _locked(snapshot))


def _delete(actor, snapshot: Snapshot) -> Snapshot:
    exporting = list(snapshot.backups.values_list("name", flat=True))
    if exporting:
        raise Conflict(
            f"Snapshot {snapshot.name} is being backed up ({', '.join(exporting)}): delete "
            "it once the backup is Ready.",
            errors={"phase": ["Being backed up."]},
        )
    copying = list(snapshot.copies.filter(phase=VolumePhase.PENDING).values_list("name", flat=True))
    if copying:
        raise Conflict(
            f"Snapshot {snapshot.name} is being copied into {', '.join(copying)}: delete it "
            "once the copy is made.",
            errors={"phase": ["Being copied."]},
        )
    if snapshot.phase not in SNAPSHOT_ACTIONS["delete"][1]:
        raise Conflict(
            gettext("Cannot delete snapshot %(snapshot)s while it is %(phase)s.")
            % {"snapshot": snapshot.name, "phase": snapshot.phase},
            errors={
                "phase": [
                    gettext("delete is not possible in phase %(phase)s.")
                    % {"phase": snapshot.phase}
                ]
            },
        )
    snapshot = _save(snapshot, phase=SnapshotPhase.DELETING, phase_changed=timezone.now())
    _requested(
        actor,
        snapshot,
        action="snapshot.delete",
        reason="SnapshotDeleting",
        message=snapshot_texts.DELETE_REQUESTED
        % {"snapshot": snapshot.name, "actor": actor_name(actor)},
    )
    return snapshot


def snapshot_finalize_delete(snapshot: Snapshot) -> None:
    """The copy is gone: drop the row and release its quota, both exactly once."""
    with transaction.atomic():
        deleted, _ = Snapshot.objects.filter(pk=snapshot.pk).delete()
        if not deleted:
            return
        quota_release(snapshot.quota_ref)
        volume = snapshot.volume
        event_publish(
            tenant=snapshot.tenant,
            kind=EVENT_KIND,
            name=volume.name,
            uid=str(volume.uid),
            reason="SnapshotDeleted",
            message=snapshot_texts.DELETED % {"snapshot": snapshot.name},
        )
        resource_forget(tenant=snapshot.tenant, kind="snapshot", name=_live_name(snapshot))
        current = Volume.objects.select_related("tenant", "vm").filter(pk=volume.pk).first()
        if current is not None:
            _volume_actions_changed(current)


def _volume_actions_changed(volume: Volume) -> None:
    """Push a detached volume's state again (``volume`` read in this transaction):
    whether it has snapshots decides its Delete button (``volumes.allowed_actions``),
    and a snapshot taken or gone changes nothing of the volume's own row (the same
    resourceVersion). A VM's disk offers no Delete either way."""
    if volume.vm_id is None:
        volume_services._publish(volume)


# --- Snapshots of a VM (all its disks, taken and restored together) --------------------
@dataclass
class VMSnapshot:
    """The snapshots of a VM's disks taken together under one name."""

    vm: VirtualMachine
    name: str
    disks: list[Snapshot]

    @property
    def phase(self) -> str:
        phases = {s.phase for s in self.disks}
        for phase in (
            SnapshotPhase.FAILED,
            SnapshotPhase.DELETING,
            SnapshotPhase.RESTORING,
            SnapshotPhase.PENDING,
        ):
            if phase in phases:
                return phase
        return SnapshotPhase.READY

    @property
    def resource_version(self) -> int:
        return max(s.resource_version for s in self.disks)

    @property
    def live(self) -> bool:
        """Taken while the VM ran (its disks copied as they were at one moment)."""
        return any(s.live for s in self.disks)

    @property
    def memory(self) -> Snapshot | None:
        """The disk's snapshot that carries the VM's memory state, if it was saved."""
        return next((s for s in self.disks if s.memory_name), None)

    @property
    def quiesced(self) -> bool:
        """The guest agent froze the filesystems for every disk's copy."""
        return all(s.quiesced for s in self.disks)

    @property
    def created(self):
        return min(s.created for s in self.disks)


def vm_snapshots(vm: VirtualMachine, name: str | None = None) -> list[VMSnapshot]:
    """``vm``'s snapshots (newest first), or the one named ``name`` (or none)."""
    rows = Snapshot.objects.filter(vm=vm).select_related("tenant", "volume", "volume__tenant")
    if name is not None:
        rows = rows.filter(name=name)
    groups: dict[str, list[Snapshot]] = {}
    for snapshot in rows.order_by("volume__device"):
        groups.setdefault(snapshot.name, []).append(snapshot)
    found = [VMSnapshot(vm=vm, name=n, disks=d) for n, d in groups.items()]
    return sorted(found, key=lambda g: g.created, reverse=True)


def _stopped_vm_disks(
    vm: VirtualMachine,
    what: str,
    *,
    need_disks: bool = True,
    phases: frozenset = QUIET_VOLUME_PHASES,
    running_ok: bool = False,
) -> tuple[VirtualMachine, list[Volume]]:
    """Inside a transaction: the VM's local volumes, then the VM, locked (the order
    every volume change locks them in); ``Conflict`` unless the VM is stopped (or, with
    ``running_ok``, running or paused: a live snapshot) and its disks are quiet (and,
    with ``need_disks``, it has some)."""
    volumes = list(
        Volume.objects.select_for_update(of=("self",))
        .select_related("tenant", "vm", "host")
        .filter(vm=vm, storage_class=StorageClass.LOCAL)
        .order_by("pk")
    )
    vm = (
        VirtualMachine.objects.select_for_update(of=("self",))
        .select_related("tenant", "host")
        .get(pk=vm.pk)
    )
    if running_ok and vm.phase not in LIVE_SNAPSHOT_PHASES:
        raise Conflict(
            gettext(snapshot_texts.VM_NOT_SNAPSHOTTABLE) % {"vm": vm.name, "phase": vm.phase},
            errors={
                "vm": [
                    gettext("%(vm)s is %(phase)s; wait until it settles.")
                    % {"vm": vm.name, "phase": vm.phase}
                ]
            },
        )
    if not running_ok and vm.phase != Phase.STOPPED:
        raise Conflict(
            gettext(snapshot_texts.VM_NOT_STOPPED)
            % {"vm": vm.name, "phase": vm.phase, "what": DONE_TO_DISKS.get(what, what)},
            errors={
                "vm": [
                    gettext("%(vm)s is %(phase)s; stop it first.")
                    % {"vm": vm.name, "phase": vm.phase}
                ]
            },
        )
    if not volumes and need_disks:
        raise Conflict(
            gettext(snapshot_texts.VM_NO_DISKS) % {"vm": vm.name},
            errors={"vm": [gettext("No disks.")]},
        )
    busy = [v.name for v in volumes if v.phase not in phases]
    if busy:
        raise Conflict(
            gettext(snapshot_texts.VM_DISKS_BUSY)
            % {"disks": ", ".join(busy), "vm": vm.name, "what": DONE_TO_DISKS.get(what, what)},
            errors={"phase": [gettext("%(name)s is busy.") % {"name": name} for name in busy]},
        )
    return vm, volumes


def _memory_flag(value, errors: dict) -> bool:
    if value in (None, "", False, "false", "0", "off"):
        return False
    if value in (True, "true", "1", "on"):
        return True
    errors.setdefault("memory", []).append(gettext("Must be true or false."))
    return False


def vm_snapshot_create(
    *, actor, vm: VirtualMachine, name: str, schedule=None, memory=False
) -> VMSnapshot:
    """Snapshot every local disk of a VM together, under one name, in one transaction:
    all are recorded and charged, or none is (``schedule`` as in
    :func:`snapshot_create`). A stopped VM's disks are copied as they are; a running or
    paused VM's as they were at one moment (its filesystems frozen first when a guest
    agent answers), and with ``memory`` its memory state is saved too, to resume from."""
    authorize(actor=actor, tenant=vm.tenant, permission="snapshot.create", target=f"vm/{vm.name}")
    errors: dict[str, list[str]] = {}
    name = _check_name(name, errors)
    memory = _memory_flag(memory, errors)
    if errors:
        raise ValidationError(gettext("The snapshot is not valid."), errors=errors)
    volumes: list[Volume] = []
    try:
        with transaction.atomic():
            vm, volumes = _stopped_vm_disks(vm, "snapshotted", running_ok=True)
            live = vm.phase != Phase.STOPPED
            if memory and not live:
                raise ValidationError(
                    gettext(snapshot_texts.MEMORY_NEEDS_RUNNING)
                    % {"vm": vm.name, "phase": vm.phase},
                    errors={"memory": [gettext("Only while the VM runs.")]},
                )
            if memory and not (vm.host is not None and vm.host.can("memory_state")):
                raise Conflict(
                    gettext(snapshot_texts.MEMORY_UNSUPPORTED) % {"vm": vm.name},
                    errors={"memory": [gettext("Not on this host.")]},
                )
            memory_gib = -(-vm.memory_mib // 1024) if memory else 0
            disks = [
                _take(
                    actor,
                    volume,
                    name,
                    vm,
                    schedule,
                    live=live,
                    memory_gib=memory_gib if index == 0 else 0,
                )
                for index, volume in enumerate(volumes)
            ]
    except IntegrityError:
        raise ValidationError(
            gettext(snapshot_texts.SNAPSHOT_EXISTS),
            errors={"name": [gettext("Taken.")]},
        ) from None
    except QuotaExceeded as error:
        _refused(vm.tenant, volumes[0].name if volumes else vm.name, error)
        raise
    return VMSnapshot(vm=vm, name=name, disks=disks)


def _vm_snapshot(vm: VirtualMachine, name: str) -> list[Snapshot]:
    disks = list(
        Snapshot.objects.select_for_update(of=("self",))
        .select_related("tenant", "volume", "volume__tenant")
        .filter(vm=vm, name=name)
        .order_by("pk")
    )
    if not disks:
        raise NotFound(
            gettext("Snapshot %(name)s of %(vm)s not found.") % {"name": repr(name), "vm": vm.name}
        )
    return disks


def vm_snapshot_ready(vm: VirtualMachine, name: str) -> tuple[VirtualMachine, list[Snapshot]]:
    """Inside a transaction: ``vm`` and the snapshots of its disks taken together as
    ``name``, locked (``NotFound`` when there are none); ``Conflict`` unless every one
    is Ready and still of a disk of ``vm`` (its device is where a copy goes): what a
    clone or a backup reads."""
    vm = (
        VirtualMachine.objects.select_for_update(of=("self",))
        .select_related("tenant")
        .get(pk=vm.pk)
    )
    disks = list(
        Snapshot.objects.select_for_update(of=("self",))
        .select_related("volume", "host")
        .filter(vm=vm, name=name)
        .order_by("volume__device")
    )
    if not disks:
        raise NotFound(f"Snapshot {name!r} of {vm.name} not found.")
    busy = [s.volume.name for s in disks if s.phase != SnapshotPhase.READY]
    if busy:
        raise Conflict(
            f"Snapshot {name} of {vm.name} is not Ready ({', '.join(busy)}).",
            errors={"snapshot": [f"{n} is not Ready." for n in busy]},
        )
    gone = [s.volume.name for s in disks if s.volume.vm_id != vm.pk or not s.volume.device]
    if gone:
        raise Conflict(
            f"{', '.join(gone)} is no longer a disk of {vm.name}: the snapshot cannot say "
            "where its copy goes.",
            errors={"snapshot": gone},
        )
    return vm, disks


def vm_snapshot_restore(*, actor, vm: VirtualMachine, name: str, confirm: str) -> VMSnapshot:
    """Restore every disk of the stopped VM from its snapshot ``name``; ``confirm`` must
    be the VM's name (what its disks hold now is lost)."""
    authorize(actor=actor, tenant=vm.tenant, permission="snapshot.restore", target=f"vm/{vm.name}")
    if str(confirm or "").strip() != vm.name:
        raise ValidationError(
            gettext(
                "Type the VM's name, %(vm)s, to confirm: its disks' current data is replaced by "
                "the snapshot's."
            )
            % {"vm": vm.name},
            errors={"confirm": [gettext("Type %(vm)s to confirm.") % {"vm": vm.name}]},
        )
    with transaction.atomic():
        vm, volumes = _stopped_vm_disks(vm, "restored", phases=RESTORABLE_VOLUME_PHASES)
        by_pk = {v.pk: v for v in volumes}
        disks = _vm_snapshot(vm, name)
        gone = [s.volume.name for s in disks if s.volume_id not in by_pk]
        if gone:
            raise Conflict(
                gettext(
                    "%(disks)s is no longer a disk of %(vm)s: restore it from its own page instead."
                )
                % {"disks": ", ".join(gone), "vm": vm.name},
                errors={"volume": gone},
            )
        memory = next((s for s in disks if s.memory_name), None)
        whole = memory is not None and set(by_pk) == {s.volume_id for s in disks}
        disks = [_restore(actor, by_pk[s.volume_id], s) for s in disks]
        _resume_from(vm, memory if whole else None)
    return VMSnapshot(vm=vm, name=name, disks=disks)


def _resume_from(vm: VirtualMachine, memory: Snapshot | None) -> None:
    """Inside the transaction of a restore, ``vm`` locked: its next start resumes from
    ``memory`` (a snapshot carrying memory state, restored with all the VM's disks), or
    boots (None: any other restore of its disks)."""
    wanted = memory.pk if memory is not None else None
    if vm.resume_from_id == wanted:
        return
    VirtualMachine.objects.filter(pk=vm.pk).update(
        resume_from=wanted, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    vm.resume_from_id = wanted
    if memory is not None:
        event_publish(
            tenant=vm.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            reason="ResumeFromSnapshot",
            message=snapshot_texts.RESUME_SET % {"snapshot": memory.name, "vm": vm.name},
        )


def vm_snapshot_delete(*, actor, vm: VirtualMachine, name: str) -> VMSnapshot:
    """Delete the snapshots of the VM's disks taken together as ``name``."""
    authorize(actor=actor, tenant=vm.tenant, permission="snapshot.delete", target=f"vm/{vm.name}")
    with transaction.atomic():
        disks = [_delete(actor, s) for s in _vm_snapshot(vm, name)]
    return VMSnapshot(vm=vm, name=name, disks=disks)


def vm_resume_memory(vm: VirtualMachine, backend) -> bool:
    """At a start of ``vm`` (its task, VM locked): resume the guest from the memory state
    it was restored with. True when it now runs from it; False when it must boot (none
    was restored, or it cannot be loaded: a Warning says why, and it is not tried
    again). A transient backend error is raised, to retry the start."""
    wanted = vm.resume_from_id
    if wanted is None:
        return False
    snapshot = Snapshot.objects.filter(pk=wanted).exclude(memory_name="").first()
    error = ""
    if snapshot is None or snapshot.phase != SnapshotPhase.READY:
        error = snapshot_texts.IS_NOW % {
            "snapshot": snapshot.name if snapshot else "?",
            "phase": snapshot.phase if snapshot else SnapshotPhase.DELETING,
        }
    else:
        try:
            backend.memory_resume(vm.domain_name, snapshot.pool, snapshot.memory_name)
        except TransientBackendError:
            raise
        except BackendError as failure:
            error = str(failure)
    VirtualMachine.objects.filter(pk=vm.pk, resume_from_id=wanted).update(
        resume_from=None, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    vm.resume_from_id = None
    name = snapshot.name if snapshot else "?"
    if error:
        event_publish(
            tenant=vm.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            type="Warning",
            reason="ResumeFailed",
            message=snapshot_texts.RESUME_FAILED % {"snapshot": name, "error": error},
        )
        return False
    # Its readiness is read from the console output of the boot the snapshot caught.
    readiness.vm_boot_begin(vm, mark=snapshot.boot_log_offset)
    event_publish(
        tenant=vm.tenant,
        kind="vm",
        name=vm.name,
        uid=str(vm.uid),
        reason="ResumedFromSnapshot",
        message=snapshot_texts.RESUMED % {"snapshot": name},
    )
    return True


# --- Observed state (task) -------------------------------------------------------------
def _locked(snapshot: Snapshot) -> Snapshot:
    found = (
        Snapshot.objects.select_for_update(of=("self",))
        .select_related("tenant", "volume", "volume__tenant", "host")
        .filter(pk=snapshot.pk)
        .first()
    )
    if found is None:
        raise NotFound(
            gettext("Snapshot %(snapshot)s not found.") % {"snapshot": repr(snapshot.name)}
        )
    return found


def _save(snapshot: Snapshot, **fields) -> Snapshot:
    Snapshot.objects.filter(pk=snapshot.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    snapshot.refresh_from_db()
    return snapshot


def snapshot_observe(
    snapshot: Snapshot,
    phase: str,
    message: str = "",
    *,
    reason: str,
    event_type: str = "Normal",
    **fields,
) -> Snapshot:
    """Record the task's outcome under the row lock, with an event on the volume's
    timeline: compare-and-set on the phase the task acted on (``snapshot``'s), so an
    outcome never lands on a phase that came after it (a delete asked meanwhile). A
    deleted snapshot is left alone."""
    with transaction.atomic():
        current = (
            Snapshot.objects.select_for_update(of=("self",))
            .select_related("tenant", "volume", "volume__tenant")
            .filter(pk=snapshot.pk)
            .first()
        )
        if current is None:
            return snapshot
        if current.phase != snapshot.phase:
            return current
        current = _save(
            current, phase=phase, message=message[:1000], phase_changed=timezone.now(), **fields
        )
        event_publish(
            tenant=current.tenant,
            kind=EVENT_KIND,
            name=current.volume.name,
            uid=str(current.volume.uid),
            type=event_type,
            reason=reason,
            message=message or snapshot_texts.IS_NOW % {"snapshot": current.name, "phase": phase},
        )
        _publish(current)
        return current


def snapshot_spec(snapshot: Snapshot) -> VolumeSpec:
    """Where the snapshot's copy lives (same pool and format as its volume)."""
    return VolumeSpec(
        pool=snapshot.pool,
        name=snapshot.backend_name,
        size_gib=snapshot.size_gib,
        format=snapshot.volume.format,
    )


def restored_volume_spec(volume: Volume) -> VolumeSpec:
    """The volume rewritten from a snapshot: a standalone file, no backing image."""
    spec = volume_services.volume_spec(volume)
    return VolumeSpec(pool=spec.pool, name=spec.name, size_gib=spec.size_gib, format=spec.format)


def volume_restored(volume: Volume, snapshot: Snapshot, capacity_gib: int) -> Volume:
    """The snapshot's data is back on the volume: Attached (to its stopped VM) or Ready."""
    return volume_services.volume_observe(
        volume,
        VolumePhase.ATTACHED if volume.attached_domain else VolumePhase.READY,
        "",
        reason="Restored",
        event_message=snapshot_texts.RESTORED_FROM % {"snapshot": snapshot.name},
        capacity_gib=capacity_gib,
    )


def restore_failed(volume: Volume, snapshot: Snapshot, message: str) -> None:
    """The copy back failed after the volume's data was dropped (or it cannot be told
    whether it was): the volume is Failed (its VM's start would fail), the snapshot is
    Ready again, and restoring it again repairs the volume."""
    volume_services.volume_fail(
        volume,
        snapshot_texts.RESTORE_FAILED % {"snapshot": snapshot.name, "error": message},
    )
    snapshot_observe(
        snapshot,
        SnapshotPhase.READY,
        snapshot_texts.RESTORE_ONTO_FAILED % {"volume": volume.name, "error": message},
        reason="RestoreFailed",
        event_type="Warning",
    )


def restore_refused(volume: Volume, snapshot: Snapshot) -> None:
    """The restore stopped before the volume's data was touched: the snapshot's copy is
    gone from the host. The volume is as before, usable (Ready or Attached); the
    snapshot, which can never be restored, is Failed (an admin deletes it)."""
    copy = snapshot.backend_name
    volume_services.volume_observe(
        volume,
        VolumePhase.ATTACHED if volume.attached_domain else VolumePhase.READY,
        snapshot_texts.RESTORE_REFUSED
        % {"snapshot": snapshot.name, "file": copy, "volume": volume.name},
        reason="RestoreFailed",
        event_type="Warning",
    )
    snapshot_observe(
        snapshot,
        SnapshotPhase.FAILED,
        snapshot_texts.CANNOT_BE_RESTORED % {"error": snapshot_texts.COPY_GONE % {"file": copy}},
        reason="RestoreFailed",
        event_type="Warning",
    )


# --- Clone a volume --------------------------------------------------------------------
def volume_clone(*, actor, volume: Volume, name: str, snapshot: str = "") -> Volume:
    """A new volume ``name`` holding a full copy of ``volume``'s data, on the same host,
    independent of it (deleting the source leaves the clone whole). The source must be
    Ready or a disk of a stopped VM; the clone is charged its size in ``storage``.

    With ``snapshot``, the copy is of that Ready snapshot of ``volume`` (a VM
    snapshot's disk or the volume's own) instead, on the snapshot's host: what the
    volume held then, while the volume itself may stay in use. It is charged the
    snapshot's size; the snapshot cannot be deleted until the copy is made."""
    tenant = volume.tenant
    authorize(actor=actor, tenant=tenant, permission="volume.clone", target=f"volume/{name}")
    errors: dict[str, list[str]] = {}
    name = volume_services._check_name(tenant, name, errors)
    if errors:
        raise ValidationError(gettext("The clone is not valid."), errors=errors)
    uid = uuid.uuid4()
    try:
        with transaction.atomic():
            if snapshot:
                found = ready_snapshot(
                    volume, snapshot, missing=ValidationError, what=DONE_TO_DISKS["copied"]
                )
                source, copy_of = found.volume, found
                copied = f"{source.name}@{found.name}"
                origin = {"created_from": VolumeSource.SNAPSHOT, "source_snapshot": found}
                detail = {"snapshot": found.name}
            else:
                source = volume_services._locked(volume)
                _quiet(source, "cloned")
                copy_of, copied = source, source.name
                origin = {"created_from": VolumeSource.VOLUME, "source_volume": source}
                detail = {}
            # What is copied (the snapshot or the volume) gives the size and the place.
            size_gib = copy_of.size_gib
            quota_reserve(
                tenant=tenant,
                ref=f"volume:{uid}",
                storage=size_gib,
                kind=ReservationKind.VOLUME,
                object_id=str(uid),
            )
            clone = Volume.objects.create(
                uid=uid,
                tenant=tenant,
                name=name,
                size_gib=size_gib,
                storage_class=source.storage_class,
                format=source.format,
                phase=VolumePhase.PENDING,
                source_name=copied,
                host=copy_of.host,
                pool=copy_of.pool,
                backend_name=volume_services._file_name(uid, source.format),
                labels=dict(source.labels),
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
                **origin,
            )
            audit_record(
                actor=actor,
                action="volume.clone",
                tenant=tenant,
                target=f"volume/{name}",
                detail={"source": source.name, "size_gib": size_gib, **detail},
            )
            arguments = {
                "clone": name,
                "source": copied,
                "size_gib": size_gib,
                "actor": actor_name(actor),
            }
            for who, fmt in (
                (source, snapshot_texts.VOLUME_CLONE_REQUESTED),
                (clone, snapshot_texts.VOLUME_CLONE_ACCEPTED),
            ):
                event_publish(
                    tenant=tenant,
                    kind=EVENT_KIND,
                    name=who.name,
                    uid=str(who.uid),
                    reason="Cloning",
                    message=fmt % arguments,
                )
            volume_services._publish(clone)
            transaction.on_commit(lambda: volume_services._enqueue(clone))
    except IntegrityError:
        raise ValidationError(
            gettext("A volume with this name exists already."), errors={"name": [gettext("Taken.")]}
        ) from None
    except QuotaExceeded as error:
        _refused(tenant, name, error)
        raise
    return clone


def ready_snapshot(volume: Volume, name: str, *, missing=NotFound, what: str) -> Snapshot:
    """Inside a transaction: ``volume``'s snapshot ``name``, locked; ``missing`` (an
    error class) when there is none, ``Conflict`` unless it is Ready (``what``: how the
    refusal says what only a Ready one is, e.g. "copied")."""
    found = (
        Snapshot.objects.select_for_update(of=("self",))
        .select_related("volume", "host")
        .filter(volume=volume, name=str(name))
        .first()
    )
    if found is None:
        raise missing(
            gettext("%(volume)s has no snapshot %(snapshot)s.")
            % {"volume": volume.name, "snapshot": repr(str(name))},
            errors={"snapshot": [gettext("No such snapshot.")]},
        )
    if found.phase != SnapshotPhase.READY:
        raise Conflict(
            gettext(
                "Snapshot %(snapshot)s of %(volume)s is %(phase)s: only a Ready one is %(what)s."
            )
            % {"snapshot": found.name, "volume": volume.name, "phase": found.phase, "what": what},
            errors={"snapshot": [gettext("Not Ready.")]},
        )
    return found


# --- Lost tasks ------------------------------------------------------------------------
def snapshots_stale() -> list[Snapshot]:
    """Snapshots still Pending, Restoring or Deleting ``ISOTOPE_STUCK_SECONDS`` after
    their last write with no task holding their volume (their task was lost): a lost
    restore would otherwise leave the volume Restoring and its VM unable to start."""
    from datetime import timedelta

    from django.conf import settings
    from django.core.cache import cache

    cutoff = timezone.now() - timedelta(seconds=settings.ISOTOPE_STUCK_SECONDS)
    rows = Snapshot.objects.filter(
        phase__in=[SnapshotPhase.PENDING, SnapshotPhase.RESTORING, SnapshotPhase.DELETING],
        updated__lt=cutoff,
    ).select_related("tenant", "volume")
    return [s for s in rows if cache.get(f"isotope:volume-lock:{s.volume_id}") is None]


def snapshots_redrive() -> list[int]:
    """Enqueue the task of every stale snapshot (beat, with the volume sweep)."""
    stale = snapshots_stale()
    for snapshot in stale:
        _enqueue(snapshot)
    return [s.pk for s in stale]


# --- Live state ------------------------------------------------------------------------
def _live_name(snapshot: Snapshot) -> str:
    return f"{snapshot.volume.name}/{snapshot.name}"


def snapshot_state(snapshot: Snapshot) -> dict:
    """What the volume page needs to redraw one snapshot row."""
    return {
        "name": snapshot.name,
        "volume": snapshot.volume.name,
        "vm": snapshot.vm.name if snapshot.vm_id else None,
        "phase": snapshot.phase,
        "message": snapshot.message,
        "sizeGiB": snapshot.size_gib,
        "created": snapshot.created.isoformat(),
        "uid": str(snapshot.uid),
        "resourceVersion": str(snapshot.resource_version),
        "actionsByRole": {
            role: snapshot_actions(snapshot, role) for role in ("viewer", "operator", "admin")
        },
    }


def _publish(snapshot: Snapshot) -> None:
    resource_publish(
        tenant=snapshot.tenant,
        kind="snapshot",
        name=_live_name(snapshot),
        data=snapshot_state(snapshot),
    )


def _requested(actor, snapshot: Snapshot, *, action: str, reason: str, message: str) -> None:
    """Audit ``action``, tell the volume's timeline (``message``: made from a format of
    :mod:`compute.texts.snapshots`, naming who asked), publish, enqueue after commit."""
    volume = snapshot.volume
    audit_record(
        actor=actor,
        action=action,
        tenant=snapshot.tenant,
        target=f"volume/{volume.name}/snapshot/{snapshot.name}",
        detail={"size_gib": snapshot.size_gib},
    )
    event_publish(
        tenant=snapshot.tenant,
        kind=EVENT_KIND,
        name=volume.name,
        uid=str(volume.uid),
        reason=reason,
        message=message,
    )
    _publish(snapshot)
    transaction.on_commit(lambda: _enqueue(snapshot))


def _enqueue(snapshot: Snapshot) -> None:
    from compute.tasks import snapshots as tasks

    if snapshot.live and snapshot.vm_id and snapshot.phase == SnapshotPhase.PENDING:
        # The disks of a running VM are copied together, at one moment, by one task.
        tasks.vm_snapshot_live.delay(snapshot.vm_id, snapshot.name)
    else:
        tasks.snapshot_apply.delay(snapshot.pk)
