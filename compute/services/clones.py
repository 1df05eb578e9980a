"""Clone a whole VM: a new VM with full copies of every disk of a stopped one.

The clone has the source's size (vCPUs, memory, disk), image, restart policy, labels and
node selector, a new name, and one new volume per disk of the source (root and data
disks, same devices, sizes and formats) made by ``createXMLFrom`` in the same host's
pool, so it runs on the source's host. It is independent: deleting the source (or its
disks) leaves the clone whole. The source must be stopped, so its disks are copied in a
consistent state without a guest agent, as for a snapshot.

Quota, in the one transaction that records it all: the new VM's cpu, memory and VM
count (``vm:<uid>``) and each copy's storage (``volume:<uid>``); a refusal names every
resource that does not fit, and nothing is created. The provisioning task makes the
copies (:func:`compute.services.volumes.vm_volumes_prepare`) before it defines the
domain, then starts the clone if asked.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from compute.choices import DesiredState, Phase, VolumePhase, VolumeSource
from compute.models import Host, Snapshot, VirtualMachine, Volume
from compute.scheduler import schedule
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from monitoring.services import event_publish
from portal.exceptions import QuotaExceeded, ValidationError
from tenants.choices import ReservationKind
from tenants.services import actor_name, audit_record, authorize, quota_check, quota_reserve


def vm_clone(
    *, actor, vm: VirtualMachine, name: str, start: bool = False, snapshot: str | None = None
) -> VirtualMachine:
    """A new VM ``name``, a full copy of the stopped ``vm`` and all its disks, charged
    to the quota; started once its disks are copied when ``start``. With ``snapshot``
    (the name of one of ``vm``'s snapshots, Ready) the disks are copied from that
    snapshot instead, and ``vm`` may be in any phase (the snapshot is consistent)."""
    tenant = vm.tenant
    authorize(actor=actor, tenant=tenant, permission="vm.create", target=f"vm/{name}")
    image, vcpus, memory_mib, disk_gib = vm_services._validate_create(
        tenant=tenant,
        name=name,
        image=vm.image,
        vcpus=vm.vcpus,
        memory_mib=vm.memory_mib,
        disk_gib=vm.disk_gib,
        restart_policy=vm.restart_policy,
    )
    uid = uuid.uuid4()
    try:
        with transaction.atomic():
            if snapshot:
                source, disks = snapshot_services.vm_snapshot_ready(vm, str(snapshot))
                host_id = disks[0].host_id
            else:
                source, disks = snapshot_services._stopped_vm_disks(vm, "cloned", need_disks=False)
                host_id = source.host_id
            # The copies are made in the pool of the source's host: the clone runs there.
            elsewhere = tuple(Host.objects.exclude(pk=host_id).values_list("pk", flat=True))
            storage = sum(d.size_gib for d in disks)
            clone = pending_vm(
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
                exclude=elsewhere,
                restart_policy=source.restart_policy,
                labels=dict(source.labels),
                node_selector=dict(source.node_selector),
            )
            copies = [
                _snapshot_copy(actor, clone, disk) if snapshot else _disk_copy(actor, clone, disk)
                for disk in disks
            ]
            audit_record(
                actor=actor,
                action="vm.clone",
                tenant=tenant,
                target=f"vm/{name}",
                detail={
                    "source": source.name,
                    "snapshot": snapshot or None,
                    "disks": {c.device: c.source_name for c in copies},
                    "storage_gib": storage,
                    "host": clone.host.name,
                },
            )
            listed = ", ".join(f"{c.source_name} → {c.name}" for c in copies) or "no disks"
            if snapshot:
                listed = f"from snapshot {snapshot}: {listed}"
            for who, text in ((source, f"Clone {name} requested"), (clone, "Accepted")):
                event_publish(
                    tenant=tenant,
                    kind="vm",
                    name=who.name,
                    uid=str(who.uid),
                    reason="Cloning",
                    message=f"{text}: a copy of {source.name} ({listed}) by {actor_name(actor)}.",
                )
            vm_services._publish(clone)
            transaction.on_commit(lambda: vm_services._enqueue("vm_provision", clone.pk))
    except IntegrityError:
        raise ValidationError(
            gettext("A VM with this name exists already."), errors={"name": [gettext("Taken.")]}
        ) from None
    except QuotaExceeded as error:
        event_publish(
            tenant=tenant,
            kind="vm",
            name=vm.name,
            type="Warning",
            reason="QuotaExceeded",
            message=f"Clone {name}: {error.message}",
        )
        raise
    return clone


def pending_vm(
    *,
    actor,
    tenant,
    uid,
    name: str,
    vcpus: int,
    memory_mib: int,
    disk_gib: int,
    image,
    storage_gib: int,
    start: bool,
    exclude: tuple[int, ...] = (),
    **fields,
) -> VirtualMachine:
    """The record of a new VM whose disks are copies (a clone's, a restored backup's),
    inside the caller's transaction: its size and ``storage_gib`` checked against the
    quota together, the VM's reservation made, a host chosen (not in ``exclude``), the
    Pending row created with ``fields`` (restart policy, labels, node selector)."""
    quota_check(tenant=tenant, cpu=vcpus, memory=memory_mib, storage=storage_gib, vms=1)
    quota_reserve(
        tenant=tenant,
        ref=f"vm:{uid}",
        cpu=vcpus,
        memory=memory_mib,
        vms=1,
        kind=ReservationKind.VM,
        object_id=str(uid),
    )
    placement = schedule(
        vcpus=vcpus,
        memory_mib=memory_mib,
        node_selector=fields.get("node_selector") or {},
        exclude=exclude,
    )
    return VirtualMachine.objects.create(
        uid=uid,
        tenant=tenant,
        name=name,
        vcpus=vcpus,
        memory_mib=memory_mib,
        disk_gib=disk_gib,
        image=image,
        host=placement.host,
        desired_state=DesiredState.RUNNING if start else DesiredState.STOPPED,
        phase=Phase.PENDING,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        **fields,
    )


def _disk_copy(actor, clone: VirtualMachine, disk: Volume) -> Volume:
    """Inside the clone's transaction: the new volume that will hold a copy of
    ``disk`` at the same device of ``clone``, charged its size."""
    return _new_disk(
        actor,
        clone,
        disk,
        size_gib=disk.size_gib,
        created_from=VolumeSource.VOLUME,
        source_name=disk.name,
        host=disk.host,
        pool=disk.pool,
    )


def _snapshot_copy(actor, clone: VirtualMachine, snapshot: Snapshot) -> Volume:
    """Inside the clone's transaction: the new volume that will hold a copy of
    ``snapshot`` at its disk's device of ``clone``, charged the snapshot's size."""
    return _new_disk(
        actor,
        clone,
        snapshot.volume,
        size_gib=snapshot.size_gib,
        created_from=VolumeSource.SNAPSHOT,
        source_name=f"{snapshot.volume.name}@{snapshot.name}",
        source_snapshot=snapshot,
        host=snapshot.host,
        pool=snapshot.pool,
    )


def _new_disk(
    actor,
    clone: VirtualMachine,
    disk: Volume,
    *,
    size_gib: int,
    created_from: str,
    source_name: str,
    host,
    pool: str,
    source_snapshot: Snapshot | None = None,
) -> Volume:
    uid = uuid.uuid4()
    quota_reserve(
        tenant=clone.tenant,
        ref=f"volume:{uid}",
        storage=size_gib,
        kind=ReservationKind.VOLUME,
        object_id=str(uid),
    )
    is_root = disk.device == volume_services.ROOT_DEVICE
    copy = Volume.objects.create(
        uid=uid,
        tenant=clone.tenant,
        name=volume_services.root_volume_name(
            clone.name, clone.tenant, "root" if is_root else disk.device
        ),
        size_gib=size_gib,
        storage_class=disk.storage_class,
        format=disk.format,
        phase=VolumePhase.PENDING,
        created_from=created_from,
        source_volume=disk,
        source_snapshot=source_snapshot,
        source_name=source_name,
        vm=clone,
        device=disk.device,
        delete_with_vm=disk.delete_with_vm,
        host=host,
        pool=pool,
        backend_name=volume_services._file_name(uid, disk.format),
        labels=dict(disk.labels),
        created_by=clone.created_by,
    )
    audit_record(
        actor=actor,
        action="volume.clone",
        tenant=clone.tenant,
        target=f"volume/{copy.name}",
        detail={"source": source_name, "size_gib": size_gib, "vm": clone.name},
    )
    event_publish(
        tenant=clone.tenant,
        kind="volume",
        name=copy.name,
        uid=str(uid),
        reason="Cloning",
        message=f"Accepted: a full copy of {source_name} ({size_gib} GiB) as "
        f"{disk.device} of {clone.name}.",
    )
    volume_services._publish(copy)
    return copy
