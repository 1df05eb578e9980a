"""Live migration services: request, queue, start, progress, finish, cancel, drain.

A requested migration is ``Pending`` until :func:`migrations_dispatch` gives it a slot
(at most ``max_parallel`` running in the cluster and ``max_outbound`` leaving one host,
from :class:`~compute.models.MigrationPolicy`); it is then ``Scheduling`` and the
``migration_run`` task picks the target (the scheduler, unless staff pinned one), runs
the job (``Running``) and ends it ``Succeeded``, ``Failed`` or ``Cancelled``. Every
change is published as the ``migration`` resource ``<uid>`` of the tenant (progress
samples too, several per second) through ``monitoring.services``.

The VM's phase is written through :func:`compute.services.vms.vm_observe`, like every
observed phase: ``Migrating`` while the job runs, then ``Running`` with the new host and
VNC port in the same transaction as the migration's ``Succeeded``, or the phase it shows
on the source, with the reason, when it failed. Every write of a migration locks its
row and increments ``resource_version`` in the database (progress samples too), so a
sample never overwrites a cancel that arrived meanwhile.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from compute.backends import MigrationOptions, MigrationProgress
from compute.choices import (
    ACTIVE_MIGRATION_PHASES,
    PHASE_LABELS,
    SLOT_MIGRATION_PHASES,
    DesiredState,
    Phase,
)
from compute.choices import MigrationPhase as MP
from compute.models import Host, HostDrain, Migration, MigrationPolicy, VirtualMachine
from compute.scheduler import NoHostAvailable, schedule
from compute.services import networks as network_services
from compute.services import volumes as volume_services
from compute.services.vms import vm_observe
from compute.texts import migrations as migration_texts
from monitoring.services import event_publish, resource_publish
from portal.exceptions import ApplicationError, Conflict, PermissionDenied, ValidationError
from tenants.services import actor_name, audit_record, authorize

logger = logging.getLogger(__name__)

KIND = "migration"
GIB = 1024**3


# --- Policy ------------------------------------------------------------------------------
def policy_cluster() -> MigrationPolicy:
    """The cluster defaults (created with the documented defaults on first use)."""
    policy = MigrationPolicy.objects.filter(host__isnull=True).first()
    if policy is None:
        policy, _ = MigrationPolicy.objects.get_or_create(host=None)
    return policy


def policy_for(host: Host | None) -> MigrationPolicy:
    """The policy for migrations leaving ``host``: its override, else the cluster's."""
    if host is not None:
        override = MigrationPolicy.objects.filter(host=host).first()
        if override is not None:
            return override
    return policy_cluster()


def migration_options(migration: Migration, vm: VirtualMachine) -> MigrationOptions:
    """Backend options of one migration from its source host's policy."""
    policy = policy_for(migration.source)
    return MigrationOptions(
        bandwidth_mib=policy.bandwidth_mib,
        max_downtime_ms=policy.max_downtime_ms,
        auto_converge=policy.auto_converge,
        post_copy=policy.post_copy,
        shared_storage_unsafe=vm.disk_gib > 0,
    )


def completion_timeout(migration: Migration, vm: VirtualMachine) -> float:
    """Seconds the whole job may take: the per-GiB timeout × the guest's memory and
    disk in GiB (like Nova's ``live_migration_completion_timeout``)."""
    policy = policy_for(migration.source)
    gib = (vm.memory_mib / 1024) + (vm.disk_gib if vm.disk_gib else 0)
    gib += volume_services.migration_volumes_gib(vm)  # data volumes copied along
    return max(1.0, policy.completion_timeout_per_gib * gib)


# --- Checks ------------------------------------------------------------------------------
def _is_staff(actor) -> bool:
    return bool(getattr(actor, "is_staff", False))


def migration_refusal(vm: VirtualMachine, *, staff: bool = False) -> str:
    """Why ``vm`` cannot be live-migrated now ("" when it can). Hosts are named to
    staff only: tenants never learn where their VMs run."""
    host = vm.host
    if host is None:
        return gettext("The VM is not placed on a host yet.")
    if not host.can("live_migration"):
        if staff:
            return gettext(
                "Host %(host)s does not support live migration (its backend, e.g. libvirt's "
                "test driver, cannot move running guests)."
            ) % {"host": host.name}
        return gettext(
            "This VM's host does not support live migration (its backend, e.g. libvirt's test "
            "driver, cannot move running guests)."
        )
    if vm.phase != Phase.RUNNING:
        return gettext("Only running VMs migrate live; %(name)s is %(phase)s.") % {
            "name": vm.name,
            "phase": PHASE_LABELS.get(vm.phase, vm.phase),
        }
    return ""


def _authorize(actor, vm_or_tenant, permission: str, target: str) -> None:
    """Platform staff may migrate any VM; tenant members need ``permission``."""
    if _is_staff(actor):
        return
    tenant = getattr(vm_or_tenant, "tenant", vm_or_tenant)
    authorize(actor=actor, tenant=tenant, permission=permission, target=target)


def _resolve_target(vm: VirtualMachine, target) -> Host:
    host = target if isinstance(target, Host) else Host.objects.filter(name=str(target)).first()
    problem = ""
    if host is None:
        problem = f"No host named {target!r}."
    elif host.pk == vm.host_id:
        problem = "The target must be another host than the VM's."
    elif not host.can("live_migration"):
        problem = f"Host {host.name} does not support live migration."
    elif not (host.enabled and host.reachable) or host.maintenance:
        problem = f"Host {host.name} is disabled, unreachable or in maintenance."
    if problem:
        raise ValidationError(problem, errors={"target": [problem]})
    return host


# --- Request -----------------------------------------------------------------------------
def migration_request(
    *,
    actor,
    vm: VirtualMachine,
    target: Host | str | None = None,
    note: str = "",
    drain: HostDrain | None = None,
) -> Migration:
    """Ask for a live migration of ``vm``; it is queued (``Pending``) and started when
    the policy's parallel limits allow.

    Tenant admins (``vm.migrate``) let the scheduler choose the target; only platform
    staff may pin ``target``. Refuses with ``Conflict`` (409) when the VM is not
    running, its host's backend cannot migrate, it is migrating already, or no other
    host could take it; ``ValidationError`` for a bad target.
    """
    _authorize(actor, vm, "vm.migrate", f"vm/{vm.name}")
    if target not in (None, "") and not _is_staff(actor):
        raise PermissionDenied(gettext("Only platform staff choose the target host."))
    note = (note or "").strip()
    if len(note) > 200:
        raise ValidationError(
            gettext("The reason is too long."), errors={"reason": [gettext("≤ 200 chars.")]}
        )
    with transaction.atomic():
        vm = (
            VirtualMachine.objects.select_for_update(of=("self",))
            .select_related("tenant", "host")
            .get(pk=vm.pk)
        )
        refusal = migration_refusal(vm, staff=_is_staff(actor))
        if refusal:
            raise Conflict(refusal, errors={"phase": [refusal]})
        if Migration.objects.filter(vm=vm, phase__in=ACTIVE_MIGRATION_PHASES).exists():
            raise Conflict(
                gettext("%(vm)s is being migrated already.") % {"vm": vm.name},
                errors={"vm": [gettext("Busy.")]},
            )
        pinned = None
        # Hosts where another tenant's overlapping network is active cannot start this
        # VM's networks (one route per range on a host): never a target.
        clashing = network_services.vm_hosts_with_overlap(vm)
        if target not in (None, ""):
            pinned = _resolve_target(vm, target)
            if pinned.pk in clashing:
                problem = f"{pinned.name}: {gettext(migration_texts.TARGET_NETWORK_CLASH)}"
                raise ValidationError(problem, errors={"target": [problem]})
        else:
            try:  # fail now, not late, when no other host could take the VM
                schedule(
                    vcpus=vm.vcpus,
                    memory_mib=vm.memory_mib,
                    node_selector=vm.node_selector,
                    exclude=(vm.host_id, *clashing),
                    lock=False,
                )
            except NoHostAvailable as error:
                raise Conflict(
                    gettext("No other host can take %(vm)s now: %(message)s")
                    % {"vm": vm.name, "message": error.message},
                    errors={"target": [error.message]},
                ) from None
        migration = Migration.objects.create(
            tenant=vm.tenant,
            vm=vm,
            vm_name=vm.name,
            source=vm.host,
            target=pinned,
            target_pinned=pinned is not None,
            drain=drain,
            phase=MP.PENDING,
            reason=migration_texts.WAITING_FOR_SLOT,
            requested_by=actor if getattr(actor, "is_authenticated", False) else None,
            request_note=note,
        )
        audit_record(
            actor=actor,
            action="vm.migrate",
            tenant=vm.tenant,
            target=f"vm/{vm.name}",
            detail={
                "migration": str(migration.uid),
                "source": vm.host.name,
                "target": pinned.name if pinned else None,
                "drain": drain.pk if drain else None,
            },
        )
        event_publish(
            tenant=vm.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            reason="MigrationRequested",
            message=migration_texts.REQUESTED % {"actor": actor_name(actor)},
        )
        _publish(migration)
        transaction.on_commit(migrations_dispatch)
    return migration


# --- Queue -------------------------------------------------------------------------------
def migrations_dispatch() -> list[int]:
    """Give free slots to ``Pending`` migrations, oldest first, and enqueue them.

    Serialised by a lock on the cluster policy row, so two dispatchers never hand out
    the same slot. Migrations that must wait get the reason. Returns the ids started.
    """
    from compute.tasks.migration import migration_run

    policy_cluster()
    started: list[int] = []
    with transaction.atomic():
        cluster = MigrationPolicy.objects.select_for_update().get(host__isnull=True)
        busy = list(
            Migration.objects.filter(phase__in=SLOT_MIGRATION_PHASES).values_list(
                "source_id", flat=True
            )
        )
        running, outbound = len(busy), Counter(busy)
        limits: dict[int, int] = {}
        pending = (
            Migration.objects.select_for_update(of=("self",))
            .filter(phase=MP.PENDING)
            .select_related("tenant", "source")
            .order_by("created", "pk")
        )
        for migration in pending:
            source = migration.source_id
            if source not in limits:
                limits[source] = policy_for(migration.source).max_outbound
            if running >= cluster.max_parallel:
                reason = migration_texts.QUEUED_CLUSTER % {
                    "running": running,
                    "limit": cluster.max_parallel,
                }
            elif outbound[source] >= limits[source]:
                reason = migration_texts.QUEUED_HOST % {
                    "leaving": outbound[source],
                    "limit": limits[source],
                }
            else:
                migration.phase, reason = MP.SCHEDULING, ""
                running += 1
                outbound[source] += 1
                started.append(migration.pk)
            if migration.phase == MP.SCHEDULING or reason != migration.reason:
                migration.reason = reason
                migration.save(update_fields=["phase", "reason"])
                _publish(migration)
        transaction.on_commit(lambda: [migration_run.delay(pk) for pk in started])
    return started


def migrations_stale() -> list[int]:
    """Migrations holding a slot whose job nobody runs: no task holds the VM's lock and
    nothing changed for ``ISOTOPE_STUCK_SECONDS`` (the worker was killed, or its task
    was lost). Running the task again settles them from where the guest is."""
    from django.core.cache import cache

    cutoff = timezone.now() - timedelta(seconds=settings.ISOTOPE_STUCK_SECONDS)
    rows = Migration.objects.filter(phase__in=SLOT_MIGRATION_PHASES, updated__lt=cutoff)
    return [
        pk
        for pk, vm_id in rows.values_list("pk", "vm_id")
        if vm_id is not None and cache.get(f"isotope:vm-lock:{vm_id}") is None
    ]


# --- The job (called by the task) --------------------------------------------------------
def migration_begin(migration: Migration) -> Migration | None:
    """Choose the target and mark the job ``Running`` and the VM ``Migrating``.

    Returns None (and records why) when the migration cannot start any more: it was
    cancelled, or the VM stopped or moved meanwhile, or no host can take it.
    """
    with transaction.atomic():
        migration = (
            Migration.objects.select_for_update(of=("self",))
            .select_related("tenant", "source", "target")
            .get(pk=migration.pk)
        )
        if migration.phase != MP.SCHEDULING:
            return None
        if migration.cancel_requested:
            _finish(migration, MP.CANCELLED, migration_texts.CANCELLED_BEFORE_START)
            return None
        vm = (
            VirtualMachine.objects.select_for_update(of=("self",))
            .select_related("tenant", "host")
            .filter(pk=migration.vm_id)
            .first()
        )
        problem = ""
        if vm is None:
            problem = migration_texts.VM_DELETED
        elif vm.host_id != migration.source_id or vm.phase != Phase.RUNNING:
            problem = migration_texts.VM_MOVED % {"phase": vm.phase}
        target = migration.target
        clashing = network_services.vm_hosts_with_overlap(vm) if vm is not None else set()
        if not problem and target is not None and target.pk in clashing:
            problem = migration_texts.TARGET_NETWORK_CLASH
        if not problem and target is None:
            try:
                target = schedule(
                    vcpus=vm.vcpus,
                    memory_mib=vm.memory_mib,
                    node_selector=vm.node_selector,
                    exclude=(migration.source_id, *clashing),
                ).host
            except NoHostAvailable as error:
                problem = migration_texts.NO_OTHER_HOST % {"reason": error.message}
        if problem:
            _finish(migration, MP.FAILED, problem)
            return None
        migration.target = target
        migration.phase = MP.RUNNING
        migration.started = timezone.now()
        migration.reason = ""
        migration.save(update_fields=["target", "phase", "started", "reason"])
        vm_observe(
            vm,
            Phase.MIGRATING,
            "",
            reason="Migrating",
            event_message=migration_texts.STARTED,
        )
        _publish(migration)
    return migration


def migration_progress(migration: Migration, sample: MigrationProgress) -> Migration:
    """Record one progress sample and push it live. ``memory_processed`` never goes
    backwards (libvirt's counter is cumulative; a late sample is not)."""
    rate = sample.transfer_rate
    remaining = sample.remaining
    eta = round(remaining / rate, 1) if rate and remaining else None
    with transaction.atomic():
        row = Migration.locked(migration.pk, "tenant")
        fields = {
            "memory_processed": max(row.memory_processed, sample.memory_processed),
            "memory_remaining": sample.memory_remaining,
            "memory_total": sample.memory_total,
            "disk_processed": max(row.disk_processed, sample.disk_processed),
            "disk_remaining": sample.disk_remaining,
            "disk_total": sample.disk_total,
            "transfer_rate": rate,
            "dirty_rate": sample.dirty_rate,
            "iteration": sample.iteration,
            "eta_seconds": eta,
            "downtime_ms": sample.downtime_ms,
            "samples": row.samples + 1,
        }
        row.write_locked(fields, copies=(migration,))
        _publish(row)
    return migration


def migration_note(migration: Migration, reason: str, *, event: str = "") -> None:
    """Show a note on the running migration's panel (why the job is being aborted, or
    that the guest is paused for the copy); with ``event``, also as a VM event of that
    reason."""
    with transaction.atomic():
        row = Migration.locked(migration.pk, "tenant", "vm")
        row.write_locked({"reason": reason[:500]}, copies=(migration,))
        if event:
            event_publish(
                tenant=row.tenant,
                kind="vm",
                name=row.vm.name,
                uid=str(row.vm.uid),
                type="Normal",
                reason=event,
                message=reason,
            )
        _publish(row)


def cancel_requested(migration: Migration) -> bool:
    return Migration.objects.filter(pk=migration.pk, cancel_requested=True).exists()


def migration_succeed(
    migration: Migration,
    *,
    vnc_port: int | None,
    backend_id: str = "",
    final: MigrationProgress | None = None,
) -> Migration:
    """The guest runs on the target: in one transaction the migration is
    ``Succeeded`` and the VM ``Running`` there with its new VNC port (capacity is
    accounted per VM host, so it moves with it)."""
    with transaction.atomic():
        migration = Migration.objects.select_for_update(of=("self",)).get(pk=migration.pk)
        vm = VirtualMachine.objects.select_related("tenant").get(pk=migration.vm_id)
        if final is not None and final.downtime_ms is not None:
            migration.downtime_ms = final.downtime_ms
        migration.memory_remaining = migration.disk_remaining = 0
        migration.memory_processed = max(
            migration.memory_processed, final.memory_processed if final else 0
        )
        migration.eta_seconds = 0
        fields = {"host": migration.target, "vnc_port": vnc_port}
        if backend_id:
            fields["backend_id"] = backend_id
        seconds = (timezone.now() - migration.started).total_seconds()
        volume_services.volumes_follow_vm(vm, migration.target)
        vm_observe(
            vm,
            Phase.RUNNING,
            "",
            reason="Migrated",
            event_message=migration_texts.FINISHED % {"seconds": f"{seconds:.1f}"},
            **fields,
        )
        _finish(migration, MP.SUCCEEDED, "")
    return migration


def migration_fail(
    migration: Migration,
    reason: str,
    *,
    cancelled: bool = False,
    vm_phase: str = Phase.RUNNING,
    detail: str = "",
) -> Migration:
    """The job failed or was cancelled: the guest stays on the source (its observed
    ``vm_phase``); a failure's plain reason is shown on the VM too, and ``detail`` (the
    hypervisor's own words) on both for platform staff only."""
    with transaction.atomic():
        migration = (
            Migration.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .get(pk=migration.pk)
        )
        vm = VirtualMachine.objects.select_related("tenant").filter(pk=migration.vm_id).first()
        phase = MP.CANCELLED if cancelled else MP.FAILED
        event = "MigrationCancelled" if cancelled else "MigrationFailed"  # an event's reason
        if vm is not None:
            vm_observe(
                vm,
                vm_phase,
                "" if cancelled else migration_texts.VM_MESSAGE_FAILED % {"reason": reason},
                reason=event,
                event_type="Normal" if cancelled else "Warning",
                event_message=(
                    migration_texts.EVENT_CANCELLED % {"reason": reason}
                    if cancelled
                    else migration_texts.EVENT_FAILED % {"reason": reason}
                ),
                detail=detail[:4000],
            )
        _finish(migration, phase, reason, detail=detail)
    return migration


def _finish(migration: Migration, phase: str, reason: str, *, detail: str = "") -> None:
    migration.phase = phase
    migration.reason = reason[:500]
    migration.detail = detail[:4000]
    migration.finished = timezone.now()
    migration.save()
    _publish(migration)
    transaction.on_commit(migrations_dispatch)


# --- Cancel ------------------------------------------------------------------------------
def migration_cancel(*, actor, migration: Migration) -> Migration:
    """Cancel a queued migration at once, or ask the running job to abort
    (``abortJob``); the guest stays where it was. ``Conflict`` when it has ended."""
    _authorize(actor, migration.tenant, "migration.cancel", f"migration/{migration.uid}")
    with transaction.atomic():
        migration = (
            Migration.objects.select_for_update(of=("self",))
            .select_related("tenant", "source", "target")
            .get(pk=migration.pk)
        )
        if migration.phase not in ACTIVE_MIGRATION_PHASES:
            raise Conflict(
                gettext("The migration has ended (%(phase)s); there is nothing to cancel.")
                % {"phase": migration.phase},
                errors={"phase": [migration.phase]},
            )
        audit_record(
            actor=actor,
            action="migration.cancel",
            tenant=migration.tenant,
            target=f"vm/{migration.vm_name}",
            detail={"migration": str(migration.uid)},
        )
        if migration.phase == MP.PENDING:
            _finish(
                migration,
                MP.CANCELLED,
                migration_texts.CANCELLED_WHILE_QUEUED % {"actor": actor_name(actor)},
            )
            return migration
        migration.cancel_requested = True
        migration.reason = migration_texts.CANCELLING % {"actor": actor_name(actor)}
        migration.save(update_fields=["cancel_requested", "reason"])
        _publish(migration)
    return migration


# --- Drain -------------------------------------------------------------------------------
def host_drain(*, actor, host: Host) -> HostDrain:
    """Put ``host`` in maintenance and migrate every running VM away (platform staff).

    VMs that cannot move (stopped, no host can take them, migrating already) are
    recorded in ``HostDrain.unmovable`` with the reason; they stay.
    """
    if actor is not None and not _is_staff(actor):
        raise PermissionDenied(gettext("Only platform staff drain hosts."))
    with transaction.atomic():
        Host.objects.filter(pk=host.pk).update(maintenance=True)
        host.maintenance = True
        drain = HostDrain.objects.create(
            host=host,
            requested_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(actor=actor, action="host.drain", target=f"host/{host.name}")
    unmovable = []
    vms = (
        VirtualMachine.objects.filter(host=host)
        .exclude(desired_state=DesiredState.DELETED)
        .select_related("tenant", "host")
        .order_by("tenant__slug", "name")
    )
    for vm in vms:
        try:
            migration_request(actor=actor, vm=vm, drain=drain, note=f"Drain of {host.name}")
        except ApplicationError as error:
            unmovable.append({"tenant": vm.tenant.slug, "vm": vm.name, "reason": error.message})
    if unmovable:
        HostDrain.objects.filter(pk=drain.pk).update(unmovable=unmovable)
        drain.unmovable = unmovable
    return drain


# --- Representation ----------------------------------------------------------------------
def migration_state(migration: Migration) -> dict:
    """What live pages need to draw a migration (no host names: tenants see this)."""

    def when(value):
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "uid": str(migration.uid),
        "resourceVersion": str(migration.resource_version),
        "vm": migration.vm_name,
        "phase": migration.phase,
        "reason": migration.reason,
        "active": migration.active,
        "percent": migration.percent,
        "memoryProcessed": migration.memory_processed,
        "memoryRemaining": migration.memory_remaining,
        "memoryTotal": migration.memory_total,
        "diskProcessed": migration.disk_processed,
        "diskRemaining": migration.disk_remaining,
        "diskTotal": migration.disk_total,
        "transferRate": migration.transfer_rate,
        "dirtyRate": migration.dirty_rate,
        "iteration": migration.iteration,
        "etaSeconds": migration.eta_seconds,
        "downtimeMs": migration.downtime_ms,
        "samples": migration.samples,
        "created": when(migration.created),
        "started": when(migration.started),
        "finished": when(migration.finished),
    }


def _publish(migration: Migration) -> None:
    resource_publish(
        tenant=migration.tenant,
        kind=KIND,
        name=str(migration.uid),
        data=migration_state(migration),
    )
