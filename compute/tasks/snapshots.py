"""The task that does a snapshot's backend work (queue ``libvirt``).

``snapshot_apply`` copies a volume into its snapshot (Pending → Ready), copies a
snapshot back over its volume (Restoring → Ready, the volume Ready/Attached again),
or removes a snapshot's copy (Deleting → gone). It holds the volume's task lock, so it
never interleaves with the volume's own task, and is safe to run twice: each step
checks what already exists. Transient errors retry with backoff.
"""

from __future__ import annotations

import contextlib
import logging

from celery import shared_task
from django.utils import timezone

from compute.backends import (
    BackendError,
    TransientBackendError,
    VolumeNotFound,
    backend_for_host,
)
from compute.choices import DesiredState, SnapshotPhase, VolumePhase
from compute.models import Snapshot
from compute.services import snapshots as services
from compute.services import volumes as volume_services
from compute.tasks.locks import Busy
from compute.tasks.volumes import GIB, MAX_RETRIES, volume_lock
from compute.texts import snapshots as snapshot_texts

logger = logging.getLogger(__name__)


def _load(snapshot_id: int) -> Snapshot | None:
    return (
        Snapshot.objects.select_related(
            "tenant", "volume", "volume__tenant", "volume__vm", "volume__host", "host"
        )
        .filter(pk=snapshot_id)
        .first()
    )


def _failed(snapshot: Snapshot, message: str) -> None:
    if snapshot.phase == SnapshotPhase.RESTORING:
        services.restore_failed(snapshot.volume, snapshot, message)
    elif snapshot.phase == SnapshotPhase.PENDING:
        services.snapshot_observe(
            snapshot, SnapshotPhase.FAILED, message, reason="SnapshotFailed", event_type="Warning"
        )
    else:
        services.snapshot_observe(
            snapshot, snapshot.phase, message, reason="SnapshotFailed", event_type="Warning"
        )


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.snapshot_apply")
def snapshot_apply(self, snapshot_id: int) -> None:
    """Converge one snapshot: take it, restore it, or delete it."""
    snapshot = _load(snapshot_id)
    if snapshot is None:
        return
    try:
        with volume_lock(snapshot.volume_id):
            snapshot = _load(snapshot_id)
            if snapshot is None:
                return
            _converge(snapshot, backend_for_host(snapshot.host))
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=min(2 ** (self.request.retries + 1), 60)) from error
        snapshot = _load(snapshot_id)
        if snapshot is not None:
            _failed(
                snapshot,
                snapshot_texts.NO_ANSWER % {"retries": self.request.retries, "error": error},
            )
    except BackendError as error:
        snapshot = _load(snapshot_id)
        if snapshot is not None:
            _failed(snapshot, str(error))


def _converge(snapshot: Snapshot, backend) -> None:
    volume = snapshot.volume
    if snapshot.phase == SnapshotPhase.DELETING:
        backend.volume_delete(snapshot.pool, snapshot.backend_name)
        if snapshot.memory_name:
            backend.volume_delete(snapshot.pool, snapshot.memory_name)
        services.snapshot_finalize_delete(snapshot)
    elif snapshot.phase == SnapshotPhase.PENDING and snapshot.live and snapshot.vm_id:
        # Lost and driven again by the sweep: its VM's disks are copied together.
        vm_snapshot_live.delay(snapshot.vm_id, snapshot.name)
    elif snapshot.phase == SnapshotPhase.PENDING:
        backend.volume_clone(volume_services.volume_spec(volume), services.snapshot_spec(snapshot))
        services.snapshot_observe(
            snapshot,
            SnapshotPhase.READY,
            snapshot_texts.TAKEN
            % {"snapshot": snapshot.name, "size_gib": snapshot.size_gib, "volume": volume.name},
            reason="SnapshotTaken",
        )
    elif snapshot.phase == SnapshotPhase.RESTORING and volume.phase != VolumePhase.RESTORING:
        # The volume is no longer waiting for this copy (failed and handled): the
        # snapshot is usable again instead of Restoring for ever.
        services.snapshot_observe(
            snapshot,
            SnapshotPhase.READY,
            snapshot_texts.NOT_RESTORED % {"volume": volume.name, "phase": volume.phase},
            reason="RestoreFailed",
            event_type="Warning",
        )
    elif snapshot.phase == SnapshotPhase.RESTORING:
        # The copy must exist before the volume's data is dropped: without it the
        # volume is left as it was, usable.
        try:
            backend.volume_info(snapshot.pool, snapshot.backend_name)
        except VolumeNotFound:
            services.restore_refused(volume, snapshot)
            return
        target = services.restored_volume_spec(volume)
        backend.volume_delete(target.pool, target.name)
        try:
            info = backend.volume_clone(services.snapshot_spec(snapshot), target)
        except VolumeNotFound as error:
            raise BackendError(str(error)) from None
        services.volume_restored(volume, snapshot, info.capacity // GIB)
        services.snapshot_observe(
            snapshot,
            SnapshotPhase.READY,
            snapshot_texts.RESTORED_ONTO % {"volume": volume.name},
            reason="SnapshotRestored",
            restored=timezone.now(),
        )


def _live_disks(vm_id: int, name: str) -> list[Snapshot]:
    return list(
        Snapshot.objects.select_related(
            "tenant",
            "volume__tenant",
            "volume__vm",
            "volume__host",
            "host",
            "vm__host",
            "vm__tenant",
        )
        .filter(vm_id=vm_id, name=name, live=True, phase=SnapshotPhase.PENDING)
        .order_by("volume__device")
    )


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.vm_snapshot_live")
def vm_snapshot_live(self, vm_id: int, name: str) -> None:
    """Take the Pending snapshots ``name`` of a running (or paused) VM's disks as they
    are at one moment, and its memory state with them when asked. Holds the VM's task
    lock (no start, stop or migration meanwhile) and every disk's; safe to run twice:
    a copy left by an earlier try is of another moment and is made again."""
    from compute.tasks.libvirt import vm_lock

    disks: list[Snapshot] = []
    try:
        with vm_lock(vm_id), contextlib.ExitStack() as held:
            for disk in _live_disks(vm_id, name):
                held.enter_context(volume_lock(disk.volume_id))
            disks = _live_disks(vm_id, name)
            if disks:
                _take_live(disks)
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=min(2 ** (self.request.retries + 1), 60)) from error
        for disk in _live_disks(vm_id, name):
            _failed(
                disk, snapshot_texts.NO_ANSWER % {"retries": self.request.retries, "error": error}
            )
    except BackendError as error:
        for disk in _live_disks(vm_id, name):
            _failed(disk, str(error))


def _take_live(disks: list[Snapshot]) -> None:
    vm = disks[0].vm
    backend = backend_for_host(vm.host)
    domain = vm.domain_name
    memory = next((d for d in disks if d.memory_name), None)
    for disk in disks:
        backend.volume_delete(disk.pool, disk.backend_name)
    if memory is not None:
        backend.volume_delete(memory.pool, memory.memory_name)
    state = backend.status(domain).state
    if state == "paused" and vm.desired_state == DesiredState.RUNNING:
        # Paused although asked to run: by an earlier try of this task, killed before it
        # could resume the guest. Resume it; the copies are made again below.
        backend.resume(domain)
        state = "running"
    if state not in {"running", "paused"}:
        for disk in disks:
            _failed(disk, snapshot_texts.LIVE_NOT_RUNNING % {"vm": vm.name, "state": state})
        return
    copy = backend.snapshot_live(
        domain,
        [
            (
                disk.volume.device,
                volume_services.volume_spec(disk.volume),
                services.snapshot_spec(disk),
            )
            for disk in disks
        ],
        (memory.pool, memory.memory_name) if memory is not None else None,
    )
    quiesced = copy.quiesced
    seconds = f"{copy.seconds:.1f}"
    for disk in disks:
        arguments = {
            "snapshot": disk.name,
            "vm": vm.name,
            "size_gib": disk.size_gib,
            "volume": disk.volume.name,
            "seconds": seconds,
        }
        if memory is not None:
            message = snapshot_texts.TAKEN_LIVE_MEMORY % arguments
        elif quiesced:
            message = snapshot_texts.TAKEN_LIVE_QUIESCED % arguments
        else:
            message = snapshot_texts.TAKEN_LIVE % arguments
        extra = {"boot_log_offset": vm.boot_log_offset} if disk is memory else {}
        services.snapshot_observe(
            disk,
            SnapshotPhase.READY,
            message,
            reason="SnapshotTaken",
            quiesced=quiesced,
            **extra,
        )


@shared_task(name="compute.tasks.libvirt.snapshot_schedules_run")
def snapshot_schedules_run(now: str | None = None) -> dict:
    """Beat: take the scheduled snapshots due at ``now`` (ISO 8601; default: the
    present) and prune beyond ``keep``."""
    from datetime import datetime

    from compute.services import snapshot_schedules

    when = datetime.fromisoformat(now) if now else None
    return snapshot_schedules.snapshot_schedules_run(when)
