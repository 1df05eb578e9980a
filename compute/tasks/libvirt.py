"""Tasks that drive libvirt (queue ``libvirt``).

Every task takes ids, loads fresh state, converges towards the VM's desired state and is
safe to run twice: a worker killed mid-task is redelivered (late ack) or the reconciler
re-enqueues the work, and neither doubles anything. One task at a time per VM (a Redis
lock); connection errors are retried with backoff, permanent errors set ``Failed``.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from compute.backends import BackendError, DomainNotFound, TransientBackendError, backend_for_host
from compute.choices import ConditionStatus, DesiredState, Phase
from compute.models import Host, NetworkInterface, VirtualMachine
from compute.services import dispatch, reconcile
from compute.services import hosts as host_services
from compute.services import networks as network_services
from compute.services import snapshots as snapshot_services
from compute.services import volumes as volume_services
from compute.services.backups import vm_restore_verify
from compute.services.readiness import sweep_due, vm_boot_begin, vm_ready_probe
from compute.services.vms import vm_fail, vm_finalize_delete, vm_observe
from compute.tasks.locks import Busy, task_lock
from compute.texts import vms as vm_texts
from portal import sql
from portal.failpoints import failpoint

logger = logging.getLogger(__name__)

RETRY = {"max_retries": 6}
# How often a stopping guest is checked until it is off or its deadline passes.
STOP_POLL_SECONDS = 1
# How often a booting guest is probed until it is Ready (a file read, or an agent ping).
READY_POLL_SECONDS = 0.5


def vm_lock(vm_id: int, seconds: int | None = None):
    """One task at a time per VM. The lock expires, so a killed worker's lock does not
    block the reconciler's repair for longer than ``ISOTOPE_VM_LOCK_SECONDS``."""
    return task_lock(f"isotope:vm-lock:{vm_id}", seconds or settings.ISOTOPE_VM_LOCK_SECONDS)


def _load(vm_id: int) -> VirtualMachine | None:
    """The VM with its tenant, host and image, in one written-out read (portal.sql):
    every task on a VM starts here."""
    table = VirtualMachine._meta.db_table
    return sql.first(
        VirtualMachine, f"{table}.id = %s", [vm_id], related=("tenant", "host", "image")
    )


def _run(task, vm_id: int, body) -> None:
    """Common shell: lock, load, run ``body(vm, backend)``, retry or fail.

    A failure is recorded against the copy the body worked on: if the user asked for
    something else meanwhile, ``vm_fail`` leaves the phase to that newer action."""
    loaded: list[VirtualMachine] = []
    try:
        with vm_lock(vm_id):
            vm = _load(vm_id)
            if vm is None:
                return
            loaded.append(vm)
            if vm.host is None:
                vm_fail(vm, vm_texts.NO_HOST)
                return
            body(vm, backend_for_host(vm.host))
    except Busy:
        raise task.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        if task.request.retries < RETRY["max_retries"]:
            delay = min(2 ** (task.request.retries + 1), 60)
            logger.warning("retrying %s for VM %s in %ss: %s", task.name, vm_id, delay, error)
            raise task.retry(countdown=delay) from error
        if loaded:
            # The plain reason without "retrying": this was the last try.
            reason = str(error).removesuffix("; retrying.").rstrip(".")
            vm_fail(
                loaded[0],
                vm_texts.GAVE_UP % {"reason": reason, "attempts": task.request.retries + 1},
                detail=error.detail,
            )
    except BackendError as error:
        if loaded:
            vm_fail(loaded[0], str(error), detail=error.detail)


def _converge(vm: VirtualMachine, backend, *, force: bool = False) -> None:
    """Bring the domain to the desired state and record what is observed."""
    name = vm.domain_name
    if vm.desired_state == DesiredState.DELETED:
        backend.delete(name)
        vm_finalize_delete(vm, backend)
        return
    try:
        status = backend.status(name)
    except DomainNotFound:
        _provision(vm, backend)
        return
    if vm.desired_state == DesiredState.RUNNING:
        if status.state == "paused":
            backend.resume(name)
        elif status.state != "running":
            # A resize made while stopped is applied here too: its own task (vm_redefine)
            # may run after this one.
            _apply_size(vm, backend)
            vm_observe(vm, Phase.STARTING)
            network_services.vm_networks_prepare(vm, backend)
            if not snapshot_services.vm_resume_memory(vm, backend):
                vm_boot_begin(vm, mark=backend.boot_mark(name))
                backend.start(name)
    elif vm.desired_state == DesiredState.PAUSED:
        if status.state == "running":
            backend.suspend(name)
    elif vm.desired_state == DesiredState.STOPPED:
        if status.state in {"running", "paused", "blocked", "shutdown"}:
            if force or not backend.capabilities.get("acpi_shutdown"):
                backend.destroy(name)
            else:
                # The guest powers off in its own time: stay Stopping, watch it, and
                # force it off at the deadline (vm_stop_enforce).
                backend.shutdown(name)
                deadline = time.time() + settings.ISOTOPE_VM_STOP_TIMEOUT
                vm_stop_enforce.apply_async((vm.pk, deadline), countdown=STOP_POLL_SECONDS)
                return
    _record(vm, backend)


def _apply_size(vm: VirtualMachine, backend) -> None:
    """Redefine a shut-off domain whose definition has another size than the VM's."""
    if backend.defined_size(vm.domain_name) == (vm.vcpus, vm.memory_mib):
        return
    backend.undefine_keep_volumes(vm.domain_name)
    volume_services.vm_volumes_prepare(vm, backend)
    network_services.vm_networks_prepare(vm, backend)
    backend.define(reconcile.domain_spec(vm))
    network_services.vm_nics_attached(vm)


def _record(vm: VirtualMachine, backend) -> None:
    status = backend.status(vm.domain_name)
    phase = reconcile.phase_for(vm, status)
    fields = {"backend_id": status.backend_id}
    if phase == Phase.RUNNING and backend.capabilities.get("console"):
        endpoint = backend.console_endpoint(vm.domain_name)
        fields["vnc_port"] = endpoint[1] if endpoint else None
    elif phase == Phase.STOPPED:
        fields["vnc_port"] = None
    # Where the backend knows readiness without a probe, it goes with Running, in one
    # write (the readiness answer, not a value for the row's ``ready`` column).
    ready = None
    if phase == Phase.RUNNING and vm.ready != ConditionStatus.TRUE:
        ready = backend.ready_unprobed(vm.domain_name)
    vm_observe(vm, phase, ready=ready, **fields)
    if phase == Phase.RUNNING and backend.capabilities.get("networks"):
        _observe_addresses(vm, backend)
    _watch_ready(vm)


def _observe_addresses(vm: VirtualMachine, backend) -> None:
    """The addresses the guest's interfaces hold now (a lease appears seconds after a
    boot: the reconciler's next pass picks it up)."""
    if sql.exists(NetworkInterface, "vm_id = %s", [vm.pk]):
        network_services.vm_addresses_observe(vm, network_services.vm_addresses_read(vm, backend))


def _watch_ready(vm: VirtualMachine) -> None:
    """Running is the domain; Ready is the guest. Probe once now (a backend with nothing
    to probe answers at once) and leave the rest to the watcher."""
    if vm.phase != Phase.RUNNING or vm.ready == ConditionStatus.TRUE:
        return
    readiness = vm_ready_probe(vm)
    if readiness is not None and not readiness.ready:
        deadline = time.time() + settings.ISOTOPE_VM_READY_TIMEOUT
        vm_ready_watch.apply_async((vm.pk, deadline), countdown=READY_POLL_SECONDS)


def _provision(vm: VirtualMachine, backend) -> None:
    vm_observe(vm, Phase.PROVISIONING)
    if not vm_restore_verify(vm, backend):
        return  # restored from a bad backup: the VM is gone, its quota released
    volume_services.vm_volumes_prepare(vm, backend)
    network_services.vm_networks_prepare(vm, backend)
    backend_id = backend.define(reconcile.domain_spec(vm))
    volume_services.vm_volumes_attached(vm)
    network_services.vm_nics_attached(vm)
    vm_observe(vm, Phase.PROVISIONING, backend_id=backend_id)
    failpoint("provision.after_define")
    if vm.desired_state in (DesiredState.RUNNING, DesiredState.PAUSED):
        # Starting and the boot's Ready fields in one write.
        vm_observe(vm, Phase.STARTING, booting=True, boot_mark=backend.boot_mark(vm.domain_name))
        backend.start(vm.domain_name)
        if vm.desired_state == DesiredState.PAUSED:
            backend.suspend(vm.domain_name)
    _record(vm, backend)


@shared_task(bind=True, acks_late=True)
def vm_provision(self, vm_id: int) -> None:
    """Create the VM's volume and domain and start it if desired (idempotent)."""
    _run(self, vm_id, _converge)


@shared_task(
    acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=RETRY["max_retries"]
)
def vm_provision_dispatch() -> int:
    """Send each VM waiting for its provision its own ``vm_provision`` (routed to its
    host's queue), until none waits (``compute.services.dispatch``). Returns how many."""
    return dispatch.provision_dispatch(vm_provision.delay)


@shared_task(bind=True, acks_late=True)
def vm_apply(self, vm_id: int, force: bool = False) -> None:
    """Converge the domain to the VM's desired state (start/stop/pause/delete)."""
    _run(self, vm_id, lambda vm, backend: _converge(vm, backend, force=force))


@shared_task(bind=True, acks_late=True)
def vm_reboot(self, vm_id: int) -> None:
    def body(vm, backend):
        vm_boot_begin(vm, mark=backend.boot_mark(vm.domain_name), rebooting=True)
        backend.reboot(vm.domain_name)
        _record(vm, backend)

    _run(self, vm_id, body)


@shared_task(bind=True, acks_late=True)
def vm_redefine(self, vm_id: int) -> None:
    """Apply a new size to a stopped VM's definition."""

    def body(vm, backend):
        status = backend.status(vm.domain_name)
        if status.state != "shutoff":
            if backend.defined_size(vm.domain_name) != (vm.vcpus, vm.memory_mib):
                vm_fail(vm, vm_texts.STOP_TO_RESIZE)
            return  # else a start got here first and applied the size
        _apply_size(vm, backend)
        _record(vm, backend)

    _run(self, vm_id, body)


@shared_task(bind=True, acks_late=True, max_retries=None)
def vm_stop_enforce(self, vm_id: int, deadline: float) -> None:
    """Watch a guest asked to shut down: record Stopped once it is off, or force it off
    when it ignores the request past ``deadline`` (epoch seconds)."""
    waiting = []

    def body(vm, backend):
        if vm.desired_state != DesiredState.STOPPED:
            return  # someone asked for something else meanwhile
        status = backend.status(vm.domain_name)
        if status.state in {"running", "paused", "blocked", "shutdown"}:
            if time.time() < deadline:
                waiting.append(True)
                return
            backend.destroy(vm.domain_name)
            vm_observe(
                vm,
                Phase.STOPPING,
                reason="ForcedOff",
                event_type="Warning",
                event_message=vm_texts.FORCED_OFF,
            )
        _record(vm, backend)

    _run(self, vm_id, body)
    if waiting:
        # Bounded by the deadline, not by a retry count.
        raise self.retry(countdown=STOP_POLL_SECONDS)


@shared_task(bind=True, acks_late=True, max_retries=None)
def vm_ready_watch(self, vm_id: int, deadline: float) -> None:
    """Probe a Running VM's guest until it is Ready or ``deadline`` (epoch seconds)
    passes; the readiness sweep keeps probing after that. No VM lock: it only reads the
    guest and writes the Ready condition (conditionally), so actions are never delayed."""
    vm = _load(vm_id)
    if vm is None or vm.phase != Phase.RUNNING or vm.ready == ConditionStatus.TRUE:
        return
    readiness = vm_ready_probe(vm)
    if readiness is not None and not readiness.ready and time.time() < deadline:
        raise self.retry(countdown=READY_POLL_SECONDS)


@shared_task
def vm_ready_sweep() -> int:
    """Beat entry point: probe the Running VMs that are not Ready (their watcher gave up,
    the host came back, the portal restarted), backing off for those that stay so
    (``readiness.sweep_due``). Returns how many were probed."""
    period = settings.CELERY_BEAT_SCHEDULE["vm-ready-sweep"]["schedule"]
    waiting = sweep_due(now=timezone.now(), period=period)
    for vm_id in waiting:
        vm_ready_watch.delay(vm_id, 0)
    return len(waiting)


@shared_task(acks_late=True)
def host_reconcile(host_id: int) -> None:
    """Compare one host's domains (one bulk call) with the database and repair drift."""
    host = Host.objects.filter(pk=host_id).first()
    if host is not None:
        reconcile.reconcile_host(host)


@shared_task
def reconcile_all() -> None:
    """Beat entry point: one reconcile task per enabled host."""
    for host_id in Host.objects.filter(enabled=True).values_list("pk", flat=True):
        host_reconcile.delay(host_id)


@shared_task(acks_late=True)
def host_check(host_id: int) -> None:
    """Read a host's facts (capacity, capabilities) and mark it reachable or not."""
    host = Host.objects.filter(pk=host_id).first()
    if host is not None:
        host_services.host_check(host)
