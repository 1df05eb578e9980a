"""Tasks that converge volumes to their spec.

``volume_apply`` (queue ``libvirt``) drives a local volume: create its storage, detach
it from a domain it should no longer be on, attach it where it should be, grow it,
or delete it. ``claim_apply`` (queue ``kubernetes``) drives a Kubernetes volume claim.
Both take ids, load fresh state and are safe to run twice; one task at a time per
volume (a Redis lock), and attach/detach/online resize also hold the VM's lock, so
they never interleave with the VM's own tasks. Transient errors retry with backoff;
permanent ones are recorded on the volume (Failed, or the step undone).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from functools import partial

from celery import shared_task

from compute.backends import (
    BackendError,
    DomainNotFound,
    TransientBackendError,
    VolumeNotFound,
    backend_for_host,
)
from compute.choices import VolumePhase, VolumeSource
from compute.models import VirtualMachine, Volume
from compute.services import volumes as services
from compute.tasks.libvirt import vm_lock
from compute.tasks.locks import Busy, task_lock
from compute.texts import volumes as volume_texts

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
GIB = 1024**3


def volume_lock(volume_id: int, seconds: int = 120):
    return task_lock(f"isotope:volume-lock:{volume_id}", seconds)


def _load(volume_id: int) -> Volume | None:
    return (
        Volume.objects.select_related(
            "tenant", "vm", "vm__host", "host", "source_image", "source_volume", "cluster"
        )
        .filter(pk=volume_id)
        .first()
    )


def _retry_or_record(task, volume_id: int, error: Exception, record) -> None:
    if task.request.retries < MAX_RETRIES:
        delay = min(2 ** (task.request.retries + 1), 60)
        logger.warning("retrying %s for volume %s in %ss: %s", task.name, volume_id, delay, error)
        raise task.retry(countdown=delay) from error
    volume = _load(volume_id)
    if volume is not None:
        record(volume, volume_texts.NO_ANSWER % {"retries": task.request.retries, "error": error})


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.volume_apply")
def volume_apply(self, volume_id: int) -> None:
    """Converge one local volume (create, detach, attach, grow, delete)."""
    step = {"record": services.volume_fail}
    try:
        with volume_lock(volume_id):
            volume = _load(volume_id)
            if volume is None:
                return
            if volume.host is None:
                services.volume_fail(volume, volume_texts.NO_HOST)
                return
            _converge(volume, backend_for_host(volume.host), step)
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        _retry_or_record(self, volume_id, error, step["record"])
    except BackendError as error:
        volume = _load(volume_id)
        if volume is not None:
            step["record"](volume, str(error))


def _converge(volume: Volume, backend, step: dict) -> None:
    if volume.phase == VolumePhase.DELETING:
        step["record"] = services.volume_delete_failed
        if volume.attached_domain:
            volume = _detach(volume, backend)
        backend.volume_delete(volume.pool, volume.backend_name)
        services.volume_finalize_delete(volume)
        return
    volume = _ensure(volume, backend)
    if volume.attached_domain and (
        volume.vm is None
        or volume.vm.domain_name != volume.attached_domain
        or volume.device != volume.attached_device
    ):
        step["record"] = _detach_failed
        volume = _detach(volume, backend)
    if volume.vm is not None and not volume.attached_domain:
        step["record"] = services.volume_attach_failed
        volume = _attach(volume, backend)
    if volume.capacity_gib < volume.size_gib:
        step["record"] = partial(services.volume_resize_failed, size_gib=volume.size_gib)
        _grow(volume, backend)


def _ensure(volume: Volume, backend) -> Volume:
    """The storage exists (created when the volume is new); Pending becomes Ready."""
    try:
        info = backend.volume_info(volume.pool, volume.backend_name)
    except VolumeNotFound:
        if volume.phase not in (VolumePhase.PENDING, VolumePhase.FAILED):
            raise BackendError(volume_texts.STORAGE_GONE) from None
        info = _make(volume, backend)
    capacity = info.capacity // GIB
    if volume.phase in (VolumePhase.PENDING, VolumePhase.FAILED):
        created = {"capacity": capacity, "disk_format": volume.format}
        return services.volume_observe(
            volume,
            VolumePhase.ATTACHED if volume.attached_domain else VolumePhase.READY,
            "",
            reason="Created",
            event_message=volume_texts.CREATED_ON_IMAGE % {**created, "image": volume.source_name}
            if volume.source_name
            else volume_texts.CREATED % created,
            capacity_gib=capacity,
        )
    if volume.capacity_gib != capacity and volume.capacity_gib >= volume.size_gib:
        return services.volume_observe(volume, capacity_gib=capacity)
    return volume


def _make(volume: Volume, backend):
    """Create the volume's storage: blank or on its image, or a full copy of the
    volume it is a clone of (``createXMLFrom`` copies the data, backing chain
    flattened, so the clone never depends on its source), or written from a backup."""
    if volume.created_from == VolumeSource.BACKUP:
        from compute.services.backups import volume_from_backup

        return volume_from_backup(volume, backend)
    if volume.created_from not in (VolumeSource.VOLUME, VolumeSource.SNAPSHOT):
        return backend.volume_create(services.volume_spec(volume))
    return services._copy_source(volume, backend)


def _vm_of_domain(domain: str) -> VirtualMachine | None:
    uid = domain.removeprefix("isotope-")
    found = VirtualMachine.objects.filter(legacy_domain_name=domain).first()
    if found is None and uid != domain:
        found = VirtualMachine.objects.filter(uid=uid).first() if _is_uuid(uid) else None
    return found


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _detach(volume: Volume, backend) -> Volume:
    domain, device = volume.attached_domain, volume.attached_device
    vm = _vm_of_domain(domain)
    with vm_lock(vm.pk) if vm is not None else nullcontext():
        try:
            backend.disk_detach(domain, device)
        except DomainNotFound:
            pass  # the domain is gone, and the disk with it
    return services.volume_detached(volume, vm=vm, device=device)


def _detach_failed(volume: Volume, message: str) -> Volume:
    return services.volume_observe(
        volume,
        message=volume_texts.DETACH_FAILED % {"message": message},
        reason="DetachFailed",
        event_type="Warning",
    )


def _attach(volume: Volume, backend) -> Volume:
    vm = volume.vm
    if vm.host_id != volume.host_id:
        return services.volume_attach_failed(
            volume, volume_texts.VM_ON_ANOTHER_HOST % {"vm": vm.name}
        )
    with vm_lock(vm.pk):
        try:
            backend.status(vm.domain_name)
        except DomainNotFound:
            # Not defined yet: its provisioning defines it with this disk and says so.
            return volume
        backend.disk_attach(vm.domain_name, services.disk_spec(volume))
    return services.volume_attached(volume, vm)


def _grow(volume: Volume, backend) -> Volume:
    size = volume.size_gib
    online = False
    if volume.attached_domain and backend.capabilities.get("online_resize"):
        try:
            online = backend.status(volume.attached_domain).state in {"running", "paused"}
        except DomainNotFound:
            online = False
    if online:
        vm = _vm_of_domain(volume.attached_domain)
        with vm_lock(vm.pk) if vm is not None else nullcontext():
            backend.disk_resize(volume.attached_domain, volume.attached_device, size)
    else:
        backend.volume_resize(volume.pool, volume.backend_name, size)
    info = backend.volume_info(volume.pool, volume.backend_name)
    capacity = info.capacity // GIB
    grown = volume_texts.GROWN_ONLINE if online else volume_texts.GROWN
    return services.volume_observe(
        volume,
        message="",
        reason="Resized",
        event_message=grown % {"capacity": capacity},
        capacity_gib=capacity,
    )


@shared_task(name="compute.tasks.libvirt.volumes_sweep")
def volumes_sweep() -> list[int]:
    """Beat: drive again the volumes (and volume snapshots, and backups) whose task
    was lost."""
    from compute.services.backups import backups_redrive
    from compute.services.snapshots import snapshots_redrive

    snapshots_redrive()
    backups_redrive()
    return services.volumes_redrive()


# --- Kubernetes volume claims ----------------------------------------------------------
CLAIM_POLLS = 60  # × 1 s: how long a new claim may take to be bound
DELETE_POLLS = 90  # × 2 s: how long a deletion waits for the pods using it to go


@shared_task(
    bind=True, acks_late=True, max_retries=None, name="compute.tasks.kubernetes.claim_apply"
)
def claim_apply(self, volume_id: int) -> None:
    """Converge one Kubernetes volume: its claim exists and is bound (Ready), or it is
    deleted with the volume the portal made for it, then finalised."""
    from compute.backends.containers import QuotaRefused
    from compute.services import clusters as cluster_services

    # What a failure is recorded as: one of the deletion, or of the claim's making (which
    # does not undo a delete asked meanwhile).
    record = services.volume_fail
    try:
        with volume_lock(volume_id):
            volume = _load(volume_id)
            if volume is None:
                return
            backend = cluster_services.cluster_backend(volume.cluster)
            namespace = volume.tenant.namespace
            if volume.phase == VolumePhase.DELETING:
                record = services.volume_delete_failed
                if backend.claim_delete(namespace, volume.backend_name):
                    if self.request.retries >= DELETE_POLLS:
                        record(volume, volume_texts.CLAIM_IN_USE)
                        return
                    raise self.retry(countdown=2)
                services.volume_finalize_delete(volume)
                return
            if volume.phase == VolumePhase.FAILED:
                return
            cluster_services.namespace_ready(tenant=volume.tenant, cluster=volume.cluster)
            backend.claim_apply(services.claim_spec(volume))
            status = backend.claim_status(namespace, volume.backend_name)
            if status is not None and status.phase == "Bound":
                services.claim_bound(volume, status)
                return
            if self.request.retries >= CLAIM_POLLS:
                services.volume_fail(
                    volume,
                    volume_texts.CLAIM_NOT_BOUND
                    % {"claim_phase": status.phase, "seconds": CLAIM_POLLS}
                    if status
                    else volume_texts.CLAIM_MISSING % {"seconds": CLAIM_POLLS},
                )
                return
            raise self.retry(countdown=1)
    except Busy:
        raise self.retry(countdown=1) from None
    except QuotaRefused as error:
        volume = _load(volume_id)
        if volume is not None:
            services.volume_refused(volume, str(error))
    except TransientBackendError as error:
        _retry_or_record(self, volume_id, error, record)
    except BackendError as error:
        volume = _load(volume_id)
        if volume is not None:
            record(volume, str(error))
