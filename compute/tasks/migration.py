"""The live-migration task (queue ``libvirt``; named under ``compute.tasks.libvirt``).

``migration_run`` takes a migration id the dispatcher gave a slot, holds the VM's lock
for the whole job (so neither other tasks nor the reconciler touch the VM meanwhile),
runs the backend's blocking ``migrate`` in a thread and, in this one, polls the job's
progress every :data:`POLL_SECONDS` (4×/s), publishing each sample. It aborts the job on
a user's cancel, on the completion timeout and on the progress timeout (the remaining
data has not reached a new low for that long). A redelivered task (the worker died)
finds the migration ``Running`` and settles it from where the guest really is.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from celery import shared_task
from django.conf import settings

from compute.backends import BackendError, DomainNotFound, backend_for_host
from compute.choices import MigrationPhase as MP
from compute.choices import Phase
from compute.models import Migration, VirtualMachine
from compute.services import migrations as services
from compute.services import networks as network_services
from compute.services import reconcile
from compute.services import segments as segment_services
from compute.services import volumes as volume_services
from compute.tasks.libvirt import Busy, vm_lock
from compute.texts import migrations as migration_texts
from portal import texts

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
PAUSED_NOTE = migration_texts.PAUSED_NOTE
# After an abort, ask again this often until the job has really ended.
ABORT_REPEAT_SECONDS = 2.0


@shared_task(name="compute.tasks.libvirt.migrations_sweep")
def migrations_sweep() -> list[int]:
    """Beat: settle migrations whose worker was lost (see services.migrations_stale)."""
    stale = services.migrations_stale()
    for migration_id in stale:
        migration_run.delay(migration_id)
    return stale


def _load(migration_id: int) -> Migration | None:
    return (
        Migration.objects.select_related("tenant", "source", "target", "vm")
        .filter(pk=migration_id)
        .first()
    )


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.migration_run")
def migration_run(self, migration_id: int) -> None:
    """Run one live migration that holds a slot (``Scheduling``); idempotent."""
    migration = _load(migration_id)
    if migration is None or migration.vm_id is None:
        return
    if migration.phase not in (MP.SCHEDULING, MP.RUNNING):
        return
    vm = migration.vm
    # Held for the whole job; a dead worker's lock expires this long after the job's
    # own deadline, and then migrations_sweep() settles the job.
    seconds = int(services.completion_timeout(migration, vm)) + settings.ISOTOPE_VM_LOCK_SECONDS
    try:
        with vm_lock(vm.pk, seconds=seconds):
            migration = _load(migration_id)
            if migration.phase == MP.RUNNING:
                _settle_lost(migration)
            elif migration.phase == MP.SCHEDULING:
                _run(migration)
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None


def _run(migration: Migration) -> None:
    migration = services.migration_begin(migration)
    if migration is None:
        return
    vm = VirtualMachine.objects.select_related("tenant").get(pk=migration.vm_id)
    name = vm.domain_name
    source = backend_for_host(migration.source)
    target = backend_for_host(migration.target)
    options = services.migration_options(migration, vm)
    policy = services.policy_for(migration.source)
    timeout = services.completion_timeout(migration, vm)
    try:
        # Local volumes follow the guest: same-named volumes wait on the target.
        copy = volume_services.migration_volumes_prepare(vm, target)
    except BackendError as error:
        volume_services.migration_volumes_cleanup(vm, target)
        services.migration_fail(
            migration,
            migration_texts.VOLUMES_NO_ROOM % {"error": error},
            vm_phase=_phase_on(vm, source, name),
        )
        return
    options = dataclasses.replace(options, copy_disks=copy)
    try:
        # The guest's interfaces name networks that must run on the target first.
        # On another host of the segment's the network is an extension whose tunnels
        # reach the source before the guest moves (it keeps its address).
        network_services.vm_networks_prepare(vm, target, host=migration.target, mark_failed=False)
    except BackendError as error:
        services.migration_fail(
            migration,
            migration_texts.NETWORKS_NOT_MADE % {"error": error},
            vm_phase=_phase_on(vm, source, name),
        )
        _target_released(vm, migration, target)
        return

    outcome: dict = {}

    def job() -> None:
        try:
            source.migrate(name, target, options)
        except BackendError as error:
            outcome["error"] = error
        except Exception as error:  # noqa: BLE001 - reported as the migration's failure
            logger.exception("migration of %s crashed", name)
            outcome["error"] = error

    try:
        if not source.migration_is_live(name):
            services.migration_note(migration, PAUSED_NOTE, event="MigratingPaused")
    except BackendError as error:  # the job itself reports what is wrong
        logger.warning("could not tell how %s migrates: %s", name, error)
    thread = threading.Thread(target=job, name=f"migrate-{name}", daemon=True)
    started = last_progress = time.monotonic()
    best_remaining: int | None = None
    abort_reason = ""
    cancelled = False
    aborted_at = 0.0
    post_copy = False
    thread.start()
    while True:
        thread.join(POLL_SECONDS)
        if not thread.is_alive():
            break
        now = time.monotonic()
        sample = source.migration_progress(name)
        # Disks are copied first (memory_total is still 0 then): their progress counts.
        if sample is not None and (sample.memory_total or sample.disk_total):
            migration = services.migration_progress(migration, sample)
            if best_remaining is None or sample.remaining < best_remaining:
                best_remaining, last_progress = sample.remaining, now
            if options.post_copy and not post_copy and sample.iteration >= 3:
                post_copy = True
                try:
                    source.migration_postcopy(name)
                except BackendError as error:
                    logger.warning("post-copy switch of %s failed: %s", name, error)
        if abort_reason:
            if now - aborted_at >= ABORT_REPEAT_SECONDS:
                aborted_at = now
                _abort(source, name)
            continue
        if services.cancel_requested(migration):
            cancelled = True
            abort_reason = _cancelled_reason(migration)
        elif now - started > timeout:
            abort_reason = migration_texts.COMPLETION_TIMEOUT % {
                "seconds": f"{timeout:.0f}",
                "per_gib": policy.completion_timeout_per_gib,
            }
        elif now - last_progress > policy.progress_timeout:
            abort_reason = migration_texts.PROGRESS_TIMEOUT % {"seconds": policy.progress_timeout}
        if abort_reason:
            logger.info("aborting migration of %s: %s", name, abort_reason)
            services.migration_note(migration, migration_texts.ABORTING % {"reason": abort_reason})
            aborted_at = now
            _abort(source, name)
    error = outcome.get("error")
    if error is None:
        _succeed(migration, vm, target, source)
        return
    if isinstance(error, BackendError):
        plain, detail = str(error), error.detail
    else:  # our own bug: tenants get no traceback text
        plain, detail = migration_texts.FAILED_UNEXPECTEDLY, repr(error)
    reason = abort_reason or plain
    if not abort_reason and _running_on(target, name):
        _succeed(migration, vm, target, source)  # an error reported after the switch-over
        return
    services.migration_fail(
        migration,
        reason,
        cancelled=cancelled,
        vm_phase=_phase_on(vm, source, name),
        detail=detail,
    )
    _target_released(vm, migration, target)


def _target_released(vm: VirtualMachine, migration: Migration, target) -> None:
    """After a failed migration (recorded: it no longer counts its target on the
    guest's network segments) the target keeps nothing of the guest: neither the
    copies of its local volumes made for it nor the network extensions."""
    volume_services.migration_volumes_cleanup(vm, target)
    segment_services.vm_segments_left(vm, migration.target)


def _cancelled_reason(migration: Migration) -> str:
    """Why a cancelled job is aborted: who asked, read back out of the "Cancelling"
    reason the cancel wrote."""
    reason = Migration.objects.filter(pk=migration.pk).values_list("reason", flat=True).first()
    found = texts.parse(reason or "")
    if found is not None and found[0] == migration_texts.CANCELLING:
        return migration_texts.CANCELLED_BY_REQUEST % {"actor": found[1]["actor"]}
    return migration_texts.CANCELLED_ON_REQUEST


def _abort(source, name: str) -> None:
    try:
        source.migration_abort(name)
    except BackendError as error:
        logger.warning("abort of %s's migration failed: %s", name, error)


def _succeed(migration: Migration, vm: VirtualMachine, target, source=None) -> None:
    name = vm.domain_name
    endpoint = None
    backend_id = ""
    try:
        backend_id = target.status(name).backend_id
        if target.capabilities.get("console"):
            endpoint = target.console_endpoint(name)
    except Exception as error:  # noqa: BLE001 - the guest moved; the port is a detail
        logger.warning("reading %s on the target failed: %s", name, error)
    final = target.migration_progress(name, completed=True)
    services.migration_succeed(
        migration,
        vnc_port=endpoint[1] if endpoint else None,
        backend_id=backend_id,
        final=final,
    )
    if source is not None:
        # The guest's local volumes live on the target now: the source's copies go.
        volume_services.migration_volumes_cleanup(vm, source)
    # Networks the source only extended for this guest leave it.
    segment_services.vm_segments_left(vm, migration.source)


def _running_on(backend, name: str) -> bool:
    try:
        return backend.status(name).state in {"running", "blocked", "paused"}
    except BackendError:
        return False


def _phase_on(vm: VirtualMachine, backend, name: str) -> str:
    """The VM's phase as its source host shows it after a failed job."""
    try:
        return reconcile.phase_for(vm, backend.status(name))
    except DomainNotFound:
        return Phase.FAILED
    except BackendError:
        return Phase.UNKNOWN


def _settle_lost(migration: Migration) -> None:
    """The worker running this job died: settle it from where the guest is now."""
    vm = VirtualMachine.objects.select_related("tenant").get(pk=migration.vm_id)
    name = vm.domain_name
    source = backend_for_host(migration.source)
    target = backend_for_host(migration.target)
    _abort(source, name)
    if _running_on(target, name) and not _running_on(source, name):
        _succeed(migration, vm, target, source)
        return
    services.migration_fail(
        migration,
        migration_texts.WORKER_LOST,
        vm_phase=_phase_on(vm, source, name),
    )
    _target_released(vm, migration, target)
