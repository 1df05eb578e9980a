"""The Ready condition: the guest is up, not only its domain running.

A VM turns ``Running`` when libvirt has started its domain; the guest boots seconds
later. Its Ready condition (shaped like Kubernetes' ``{type, status, reason, message,
lastTransitionTime}``) says when the guest itself is up:

- a boot (start, reboot) sets it False and records where this boot's console output
  begins (:func:`vm_boot_begin`, called by the tasks just before they start or reset
  the domain);
- once the VM is Running, the backend's probe (``guest_ready``: a QEMU guest agent
  that answers a ping, else the image's ``ready_banner`` on the serial console after
  that mark, else nothing to probe) sets it True (:func:`vm_ready_probe`, run by the
  tasks, the watcher task and the readiness sweep);
- leaving Running for any phase but Migrating sets it False with the phase as the
  reason, Unknown when the host does not answer (:func:`ready_on_phase`, part of what
  ``vm_observe`` writes); a live-migrated guest never stopped, so it stays Ready.

Every write is a conditional UPDATE that increments ``resource_version`` in the database;
the probe's write is also conditioned on the boot it probed and the phase, so a reboot or
a stop in between is never overwritten by a stale answer.

Workloads have the same condition, derived from pod readiness (:func:`workload_ready_condition`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from compute.backends import BackendError, backend_for_host
from compute.backends.base import Readiness
from compute.choices import ConditionStatus, Phase
from compute.models import VirtualMachine
from compute.texts import vms as vm_texts
from monitoring.formats import timestamp

logger = logging.getLogger(__name__)

# Phases in which a guest that was up stays up (a live migration moves it running).
KEEPS_READY = frozenset({Phase.RUNNING, Phase.MIGRATING})


def ready_condition(vm: VirtualMachine) -> dict:
    """The VM's Ready condition as the API and live pages show it."""
    return _condition(vm.ready, vm.ready_reason, vm.ready_message, vm.ready_changed)


def workload_ready_condition(workload) -> dict:
    """A workload is Ready when all its desired pods are ready, available and updated,
    which is exactly its Running phase (SPEC's pod column); so its status changes when
    the phase does."""
    counts = f"{workload.ready_replicas}/{workload.replicas} pods ready"
    if workload.phase == Phase.RUNNING:
        return _condition(ConditionStatus.TRUE, "AllPodsReady", counts, workload.phase_changed)
    status = ConditionStatus.UNKNOWN if workload.phase == Phase.UNKNOWN else ConditionStatus.FALSE
    return _condition(
        status, "PodsNotReady", f"{counts}; {workload.phase}.", workload.phase_changed
    )


def _condition(status: str, reason: str, message: str, changed: datetime | None) -> dict:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamp(changed) if changed else None,
    }


def ready_on_phase(vm: VirtualMachine, phase: str, now: datetime) -> dict:
    """The Ready fields to write with an observed change to ``phase`` (``vm`` holds the
    values before it). Empty when they stay as they are."""
    if phase in KEEPS_READY:
        if vm.ready == ConditionStatus.TRUE:
            return {}
        status, reason = ConditionStatus.FALSE, "GuestBooting"
        message = vm_texts.GUEST_BOOTING
    elif phase == Phase.UNKNOWN:
        status, reason = ConditionStatus.UNKNOWN, "HostUnreachable"
        message = vm_texts.HOST_NOT_ANSWERING
    else:
        status, reason, message = ConditionStatus.FALSE, phase, vm_texts.VM_IS[phase]
    updates = {"ready": status, "ready_reason": reason, "ready_message": message}
    if vm.ready != status:
        updates["ready_changed"] = now
    return {key: value for key, value in updates.items() if getattr(vm, key) != value}


def _boot_values(mark: int | None, *, rebooting: bool) -> dict:
    """The Ready fields a boot begins with: not Ready until the guest reports, and only
    console output after ``mark`` counts for it."""
    reason, message = (
        ("Rebooting", vm_texts.GUEST_RESTARTING)
        if rebooting
        else ("Starting", vm_texts.GUEST_STARTING)
    )
    return {
        "boot_log_offset": mark,
        "ready": ConditionStatus.FALSE,
        "ready_reason": reason,
        "ready_message": message,
    }


def _answer_values(readiness: Readiness) -> dict:
    """The Ready fields that record a probe's answer."""
    return {
        "ready": ConditionStatus.TRUE if readiness.ready else ConditionStatus.FALSE,
        "ready_reason": readiness.reason,
        "ready_message": readiness.message[:300],
    }


def boot_fields(vm: VirtualMachine, *, mark: int | None, now: datetime) -> dict:
    """What :func:`vm_boot_begin` writes for a first boot, as fields for a write of the
    locked row ``vm`` (its values before it) that also records another change
    (``vm_observe``'s Starting). Empty when they stay as they are."""
    updates = _boot_values(mark, rebooting=False)
    if vm.ready != ConditionStatus.FALSE:
        updates["ready_changed"] = now
    return {key: value for key, value in updates.items() if getattr(vm, key) != value}


def ready_fields(readiness: Readiness, *, was: str, now: datetime) -> dict:
    """The fields that record a Ready answer (``readiness.ready``), as
    :func:`vm_ready_probe` writes them, for a row whose Ready status was ``was``."""
    updates = _answer_values(readiness)
    if was != ConditionStatus.TRUE:
        updates["ready_changed"] = now
    return updates


def ready_event(vm: VirtualMachine, readiness: Readiness) -> None:
    """The event of ``vm``'s guest turning Ready (``vm`` holds the values written)."""
    from monitoring.services import event_publish

    after = (vm.ready_changed - vm.phase_changed).total_seconds()
    event_publish(
        tenant=vm.tenant,
        kind="vm",
        name=vm.name,
        uid=str(vm.uid),
        reason="Ready",
        message=vm_texts.READY_AFTER_RUNNING
        % {"message": readiness.message, "seconds": f"{after:.1f}"},
    )


def _changed_at(status: str, now: datetime):
    """``ready_changed`` for a write of ``status``: kept when the status stays, else now
    (decided by the database against the row as it is, not a copy)."""
    return Case(When(ready=status, then=F("ready_changed")), default=Value(now))


def vm_boot_begin(vm: VirtualMachine, *, mark: int | None, rebooting: bool = False) -> None:
    """A boot of ``vm``'s guest is about to begin: not Ready until it reports, and only
    console output after ``mark`` (the backend's ``boot_mark``) counts for it."""
    now = timezone.now()
    with transaction.atomic():
        written = VirtualMachine.objects.filter(pk=vm.pk).update(
            **_boot_values(mark, rebooting=rebooting),
            ready_changed=_changed_at(ConditionStatus.FALSE, now),
            updated=now,
            resource_version=F("resource_version") + 1,
        )
        if written:
            _refresh_and_publish(vm)


def vm_ready_probe(vm: VirtualMachine) -> Readiness | None:
    """Probe the guest of a Running ``vm`` and record what it says. Returns the probe's
    answer, or None when the VM is not Running (nothing to probe) or its host failed."""
    if vm.phase != Phase.RUNNING or vm.host is None:
        return None
    try:
        readiness = backend_for_host(vm.host).guest_ready(
            vm.domain_name, banner=vm.image.ready_banner, since=vm.boot_log_offset
        )
    except BackendError as error:
        logger.info("readiness probe of %s failed: %s", vm, error)
        return None
    now = timezone.now()
    status = ConditionStatus.TRUE if readiness.ready else ConditionStatus.FALSE
    # Only for the boot and the phase that were probed; and only when something changes.
    same_boot = VirtualMachine.objects.filter(
        pk=vm.pk, phase=Phase.RUNNING, boot_log_offset=vm.boot_log_offset
    )
    if vm.boot_log_offset is None:
        same_boot = VirtualMachine.objects.filter(
            pk=vm.pk, phase=Phase.RUNNING, boot_log_offset__isnull=True
        )
    if not readiness.ready:
        same_boot = same_boot.exclude(ready=ConditionStatus.TRUE)  # only a boot resets it
    with transaction.atomic():
        written = same_boot.exclude(
            ready=status, ready_reason=readiness.reason, ready_message=readiness.message
        ).update(
            **_answer_values(readiness),
            ready_changed=_changed_at(status, now),
            updated=now,
            resource_version=F("resource_version") + 1,
        )
        if written:
            fresh = _refresh_and_publish(vm)
            if readiness.ready and fresh is not None and fresh.ready_changed == now:
                ready_event(fresh, readiness)
    return readiness


def _refresh_and_publish(vm: VirtualMachine) -> VirtualMachine | None:
    """Reload ``vm``'s fields from its row and push its state to live pages."""
    from compute.services.vms import _publish

    fresh = VirtualMachine.objects.select_related("tenant").filter(pk=vm.pk).order_by().first()
    if fresh is None:
        return None
    for field in (
        "ready",
        "ready_reason",
        "ready_message",
        "ready_changed",
        "boot_log_offset",
        "resource_version",
        "updated",
    ):
        setattr(vm, field, getattr(fresh, field))
    _publish(fresh)
    return fresh


# The readiness sweep's backoff: a Running VM that is not Ready is probed at every sweep
# for its first ``SWEEP_EAGER`` seconds (since it began Running or its condition last
# changed), then at intervals that double every doubling of that time, up to
# ``SWEEP_SLOWEST``. A guest whose banner never comes (a broken image, a guest stuck in
# its boot loader) is probed every five minutes, not every sweep for as long as it runs.
SWEEP_EAGER = 300.0
SWEEP_SLOWEST = 300.0


def sweep_interval(waited: float, period: float) -> float:
    """How often the sweep (every ``period`` seconds) probes a VM not Ready for
    ``waited`` seconds: ``period`` at first, doubling with each doubling of ``waited``
    past ``SWEEP_EAGER``, at most ``SWEEP_SLOWEST`` (and never less than ``period``)."""
    interval = period
    threshold = SWEEP_EAGER
    while waited >= threshold and interval * 2 <= SWEEP_SLOWEST:
        interval *= 2
        threshold *= 2
    if waited >= threshold:
        interval = max(SWEEP_SLOWEST, period)
    return interval


def sweep_due(*, now: datetime, period: float) -> list[int]:
    """The Running, not Ready VMs the readiness sweep at ``now`` probes. Stateless: a VM
    is due when its time not Ready falls in the first ``period`` of its interval (one
    sweep in each), measured from when it last began Running or its condition last
    changed, whichever is later (a host that comes back restarts the count)."""
    due = []
    rows = (
        VirtualMachine.objects.filter(phase=Phase.RUNNING)
        .exclude(ready=ConditionStatus.TRUE)
        .values_list("pk", "phase_changed", "ready_changed")
    )
    for pk, phase_changed, ready_changed in rows:
        since = max(moment for moment in (phase_changed, ready_changed) if moment is not None)
        waited = max((now - since).total_seconds(), 0.0)
        interval = sweep_interval(waited, period)
        if interval <= period or waited % interval < period:
            due.append(pk)
    return due
