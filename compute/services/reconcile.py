"""The reconciler: the database's VMs against what one host really runs.

One bulk call per host (``list_statuses``). Settled VMs get the observed phase; a
domain that vanished, stopped or started outside the portal is reported as a Warning
event and handled by the VM's restart policy; an unreachable host marks its VMs
``Unknown`` without losing them; VMs stuck in a transitional phase (their task was lost)
are driven again. VMs in a live migration are left to the migration task, and VMs being
snapshotted live to the snapshot task.

The VM rows are read once per pass, without locks; every write goes through
:func:`~compute.services.vms.vm_observe`, which locks the row and drops an observation
(and a desired state the reconciler would adopt) when a user acted after the read. The
next pass, or the task of the user's action, then looks again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.backends import BackendError, DomainSpec, DomainStatus, backend_for_host
from compute.choices import (
    SLOT_MIGRATION_PHASES,
    TRANSITIONAL_PHASES,
    DesiredState,
    ImageKind,
    Phase,
    RestartPolicy,
    SnapshotPhase,
)
from compute.models import Host, Migration, Snapshot, VirtualMachine
from compute.services.networks import (
    vm_addresses_observe,
    vm_addresses_read,
    vm_nics,
    vm_nics_by_vm,
)
from compute.services.vms import vm_observe
from compute.services.volumes import vm_disks
from compute.texts import vms as vm_texts
from portal import sql

logger = logging.getLogger(__name__)

# libvirt states → phase, when the state agrees with what the user asked for.
_STATE_PHASE = {
    "running": Phase.RUNNING,
    "blocked": Phase.RUNNING,
    "paused": Phase.PAUSED,
    "pmsuspended": Phase.PAUSED,
    "shutdown": Phase.STOPPING,
    "shutoff": Phase.STOPPED,
    "crashed": Phase.FAILED,
    "migrating": Phase.MIGRATING,
    "nostate": Phase.UNKNOWN,
}


# A domain found in another live state than desired, changed outside the portal: the
# portal adopts it (it does not fight the operator) and says so.
_FOLLOWED = {
    (DesiredState.STOPPED, "running"): (
        DesiredState.RUNNING,
        "StartedOutsidePortal",
        vm_texts.STARTED_OUTSIDE,
    ),
    (DesiredState.STOPPED, "paused"): (
        DesiredState.PAUSED,
        "StartedOutsidePortal",
        vm_texts.STARTED_PAUSED_OUTSIDE,
    ),
    (DesiredState.RUNNING, "paused"): (
        DesiredState.PAUSED,
        "PausedOutsidePortal",
        vm_texts.PAUSED_OUTSIDE,
    ),
    (DesiredState.PAUSED, "running"): (
        DesiredState.RUNNING,
        "ResumedOutsidePortal",
        vm_texts.RESUMED_OUTSIDE,
    ),
}


def domain_spec(vm: VirtualMachine) -> DomainSpec:
    image = vm.image
    return DomainSpec(
        name=vm.domain_name,
        vcpus=vm.vcpus,
        memory_mib=vm.memory_mib,
        tenant=vm.tenant.slug,
        vm_name=vm.name,
        vm_uid=str(vm.uid),
        kernel=image.kernel_path if image.kind == ImageKind.KERNEL else "",
        initrd=image.initrd_path if image.kind == ImageKind.KERNEL else "",
        cmdline=image.cmdline if image.kind == ImageKind.KERNEL else "",
        disk_gib=vm.disk_gib,
        base_image=image.disk_path if image.kind == ImageKind.DISK else "",
        base_format=image.disk_format or "qcow2",
        disks=vm_disks(vm),
        nics=vm_nics(vm),
    )


def phase_for(vm: VirtualMachine, status: DomainStatus) -> str:
    """The phase a domain state shows, given what the VM is asked to be."""
    if status.state == "crashed":
        return Phase.FAILED
    if status.state == "shutoff" and vm.desired_state == DesiredState.RUNNING:
        return Phase.STOPPED if status.reason in {"shutdown", ""} else Phase.FAILED
    return _STATE_PHASE.get(status.state, Phase.UNKNOWN)


def reconcile_host(host: Host) -> dict:
    """Reconcile every VM placed on ``host``. Returns counts for logs and tests."""
    backend = backend_for_host(host)

    def placed() -> list[VirtualMachine]:
        queryset = VirtualMachine.objects.filter(host=host)
        return list(queryset.select_related("tenant", "image", "host"))

    try:
        statuses = backend.list_statuses()
    except BackendError as error:
        vms = placed()
        _host_unreachable(host, vms, str(error))
        return {"unreachable": len(vms)}
    # Read the VMs after the domains: a VM that a live migration moved away in between
    # is then no longer listed here, instead of looking vanished from this host.
    vms = placed()
    migrating = set(
        Migration.objects.filter(
            vm__in=[vm.pk for vm in vms], phase__in=SLOT_MIGRATION_PHASES
        ).values_list("vm_id", flat=True)
    )
    # A live snapshot pauses the guest (and, with memory, saves and reloads it): its
    # task owns the domain until the snapshot is taken.
    migrating |= set(
        Snapshot.objects.filter(
            vm__in=[vm.pk for vm in vms], live=True, phase=SnapshotPhase.PENDING
        ).values_list("vm_id", flat=True)
    )
    Host.objects.filter(pk=host.pk).update(reachable=True, last_seen=timezone.now(), message="")
    stuck_before = timezone.now() - timedelta(seconds=settings.ISOTOPE_STUCK_SECONDS)
    # Every listed VM's interfaces in one query, and each extended network's leases
    # read once per pass: not one query (or one home-host call) per VM.
    nics = vm_nics_by_vm(vm.pk for vm in vms)
    leases_read: dict = {}
    now = sql.clock_anchored()  # the database's time, read once if any VM has interfaces
    counts = {"ok": 0, "changed": 0, "drift": 0, "redriven": 0}
    for vm in vms:
        if vm.pk in migrating:  # the migration task owns it until the job has ended
            counts["ok"] += 1
            continue
        status = statuses.get(vm.domain_name)
        if vm.phase in TRANSITIONAL_PHASES:
            if vm.phase_changed < stuck_before and not _locked(vm):
                counts["redriven"] += 1
                _redrive(vm)
            continue
        outcome = _reconcile_vm(vm, status)
        counts[outcome] += 1
        if status is not None and status.state == "running" and vm.pk in nics:
            _observe_addresses(backend, vm, nics[vm.pk], leases_read, now)
    return counts


def _observe_addresses(backend, vm: VirtualMachine, nics: list, leases_read: dict, now) -> None:
    """The DHCP leases of a running VM's interfaces (one call per VM with interfaces)."""
    try:
        reading = vm_addresses_read(vm, backend, nics=nics, leases_read=leases_read, now=now)
        vm_addresses_observe(vm, reading, nics=nics)
    except BackendError as error:
        logger.info("could not read the addresses of %s: %s", vm, error)


def _locked(vm: VirtualMachine) -> bool:
    from django.core.cache import cache

    return cache.get(f"isotope:vm-lock:{vm.pk}") is not None


def _redrive(vm: VirtualMachine) -> None:
    from compute.tasks import libvirt as tasks

    logger.warning("VM %s stuck in %s since %s: driving it again", vm, vm.phase, vm.phase_changed)
    task = tasks.vm_provision if vm.phase in (Phase.PENDING, Phase.PROVISIONING) else tasks.vm_apply
    transaction.on_commit(lambda: task.delay(vm.pk))


def _host_unreachable(host: Host, vms: list[VirtualMachine], error: str) -> None:
    Host.objects.filter(pk=host.pk).update(reachable=False, message=error[:500])
    for vm in vms:
        if vm.phase != Phase.UNKNOWN and vm.desired_state != DesiredState.DELETED:
            vm_observe(
                vm,
                Phase.UNKNOWN,
                vm_texts.HOST_UNREACHABLE % {"host": host.name, "phase": vm.phase},
                reason="HostUnreachable",
                event_type="Warning",
            )


def _reconcile_vm(vm: VirtualMachine, status: DomainStatus | None) -> str:
    from compute.tasks import libvirt as tasks

    if status is None:
        if vm.desired_state == DesiredState.DELETED:
            return "ok"
        policy = vm.restart_policy
        if policy == RestartPolicy.NEVER:
            vm_observe(
                vm,
                Phase.FAILED,
                vm_texts.DOMAIN_VANISHED,
                reason="DomainVanished",
                event_type="Warning",
            )
        elif vm_observe(
            vm,
            Phase.PROVISIONING,
            "",
            reason="DomainVanished",
            event_type="Warning",
            event_message=vm_texts.DOMAIN_VANISHED_RECREATING % {"policy": policy},
        ):
            transaction.on_commit(lambda: tasks.vm_provision.delay(vm.pk))
        return "drift"

    observed = phase_for(vm, status)
    desired = vm.desired_state
    if desired == DesiredState.RUNNING and status.state in {"shutoff", "crashed"}:
        failure = observed == Phase.FAILED
        restart = vm.restart_policy == RestartPolicy.ALWAYS or (
            vm.restart_policy == RestartPolicy.ON_FAILURE and failure
        )
        why = status.reason or status.state
        if restart:
            if vm_observe(
                vm,
                Phase.STARTING,
                "",
                reason="StoppedOutsidePortal",
                event_type="Warning",
                event_message=vm_texts.STOPPED_OUTSIDE_RESTARTING
                % {"why": why, "policy": vm.restart_policy},
            ):
                transaction.on_commit(lambda: tasks.vm_apply.delay(vm.pk))
        else:
            vm_observe(
                vm,
                observed,
                vm_texts.STOPPED_OUTSIDE % {"why": why} if failure else "",
                reason="StoppedOutsidePortal",
                event_type="Warning",
                event_message=vm_texts.STOPPED_OUTSIDE_LEFT_STOPPED
                % {"why": why, "policy": vm.restart_policy},
                follow=DesiredState.STOPPED,
            )
        return "drift"
    followed = _FOLLOWED.get((desired, status.state))
    if followed is not None:
        adopt, reason, message = followed
        vm_observe(
            vm, observed, reason=reason, event_type="Warning", event_message=message, follow=adopt
        )
        return "drift"
    if vm.phase != observed:
        vm_observe(vm, observed, backend_id=status.backend_id)
        return "changed"
    return "ok"
