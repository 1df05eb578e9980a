"""Clone a whole VM: a new VM with full copies of every disk of a stopped one.

The clone has the source's image, restart policy, labels and node selector, a new name,
and one new volume per disk of the source (root and data disks, same devices and formats)
made by ``createXMLFrom`` in the same host's pool, so it runs on the source's host. Its
size is the source's unless another is asked for: a flavor, vCPUs, memory, and a root
disk at least as large as the source's (disks only grow; the copy is grown through the
storage API's volume resize once it is made). It is independent: deleting the source (or its
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
from compute.models import Flavor, Host, Snapshot, VirtualMachine, Volume
from compute.scheduler import schedule
from compute.services import dispatch
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.texts import clones as clone_texts
from monitoring.services import event_publish
from portal.exceptions import QuotaExceeded, ValidationError
from tenants.choices import ReservationKind
from tenants.services import actor_name, audit_record, authorize, quota_check, quota_reserve


def vm_clone(
    *,
    actor,
    vm: VirtualMachine,
    name: str,
    start: bool = False,
    snapshot: str | None = None,
    flavor: Flavor | str | None = None,
    vcpus=None,
    memory_mib=None,
    disk_gib=None,
) -> VirtualMachine:
    """A new VM ``name``, a full copy of the stopped ``vm`` and all its disks, charged
    to the quota; started once its disks are copied when ``start``. With ``snapshot``
    (the name of one of ``vm``'s snapshots, Ready) the disks are copied from that
    snapshot instead, and ``vm`` may be in any phase (the snapshot is consistent).

    The clone's size: ``vcpus`` and ``memory_mib`` when given, else ``flavor``'s, else
    the source's; its root disk ``disk_gib`` GiB when given, else the flavor's disk when
    larger than the source's root disk, else the source's. A root disk smaller than the
    one copied is refused (``ValidationError`` on ``disk_gib``): disks only grow. The
    copies are charged at their new size in the same transaction."""
    tenant = vm.tenant
    authorize(actor=actor, tenant=tenant, permission="vm.create", target=f"vm/{name}")
    flavor_obj = _flavor(flavor)
    asked_disk = disk_gib not in (None, "")
    image, vcpus, memory_mib, disk_gib = vm_services._validate_create(
        tenant=tenant,
        name=name,
        image=vm.image,
        vcpus=_given(vcpus, flavor_obj.vcpus if flavor_obj else vm.vcpus),
        memory_mib=_given(memory_mib, flavor_obj.memory_mib if flavor_obj else vm.memory_mib),
        disk_gib=disk_gib if asked_disk else vm.disk_gib,
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
            root = _root_size(disks)
            if not asked_disk and root is not None:
                disk_gib = max(root, flavor_obj.disk_gib if flavor_obj else 0)
            sizes = _grown_sizes(source, disks, root, disk_gib)
            storage = sum(sizes)
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
                _snapshot_copy(actor, clone, disk, size)
                if snapshot
                else _disk_copy(actor, clone, disk, size)
                for disk, size in zip(disks, sizes, strict=True)
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
                    "size": {"vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib},
                },
            )
            arguments = {
                "source": source.name,
                "disks": ", ".join(f"{c.source_name} → {c.name}" for c in copies),
                "vcpus": vcpus,
                "memory_mib": memory_mib,
                "disk_gib": disk_gib,
                "snapshot": snapshot,
                "actor": actor_name(actor),
            }
            for who, fmt in (
                (source, _clone_text(requested=True, copies=copies, snapshot=snapshot, root=root)),
                (clone, _clone_text(requested=False, copies=copies, snapshot=snapshot, root=root)),
            ):
                event_publish(
                    tenant=tenant,
                    kind="vm",
                    name=who.name,
                    uid=str(who.uid),
                    reason="Cloning",
                    message=fmt % {**arguments, "clone": name},
                )
            vm_services._publish(clone)
            transaction.on_commit(lambda: dispatch.provision_request(clone.pk))
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
            message=clone_texts.QUOTA_EXCEEDED % {"clone": name, "error": error.stored_message},
        )
        raise
    return clone


# A clone's event by (on the source, from a snapshot, with a root disk); with no disks
# at all (a VM booting a kernel, copied from its disks) the NO_DISKS ones.
CLONE_TEXTS = {
    (True, True, True): clone_texts.REQUESTED_FROM_SNAPSHOT,
    (True, True, False): clone_texts.REQUESTED_FROM_SNAPSHOT_NO_ROOT,
    (True, False, True): clone_texts.REQUESTED,
    (True, False, False): clone_texts.REQUESTED_NO_ROOT,
    (False, True, True): clone_texts.ACCEPTED_FROM_SNAPSHOT,
    (False, True, False): clone_texts.ACCEPTED_FROM_SNAPSHOT_NO_ROOT,
    (False, False, True): clone_texts.ACCEPTED,
    (False, False, False): clone_texts.ACCEPTED_NO_ROOT,
}


def _clone_text(*, requested: bool, copies: list, snapshot, root: int | None) -> str:
    """The format of a clone's event: on the source (``requested``) or on the clone."""
    if not copies:
        return clone_texts.REQUESTED_NO_DISKS if requested else clone_texts.ACCEPTED_NO_DISKS
    return CLONE_TEXTS[(requested, bool(snapshot), root is not None)]


def _given(value, default):
    """A size given by the caller, else ``default`` (``None`` and blank: not given)."""
    return default if value is None or (isinstance(value, str) and not value.strip()) else value


def _flavor(flavor) -> Flavor | None:
    return None if flavor in (None, "") else vm_services.flavor_named(flavor)


def _is_root(disk) -> bool:
    volume = disk.volume if isinstance(disk, Snapshot) else disk
    return volume.device == volume_services.ROOT_DEVICE


def _root_size(disks: list) -> int | None:
    """The size of the root disk the clone copies (its snapshot's when from one);
    ``None`` when the source has none (it boots a kernel and has data disks only)."""
    return next((d.size_gib for d in disks if _is_root(d)), None)


def _grown_sizes(source: VirtualMachine, disks: list, root: int | None, disk_gib: int) -> list[int]:
    """The size of each copy: the data disks' as they are, the root disk ``disk_gib``;
    ``ValidationError`` when that would shrink it, or when there is no root disk to
    give another size."""
    if root is None:
        if disk_gib and disk_gib != source.disk_gib:
            message = gettext("%(vm)s has no root disk: the clone's disk size cannot change.") % {
                "vm": source.name
            }
            raise ValidationError(message, errors={"disk_gib": [message]})
    elif disk_gib < root:
        message = gettext(
            "Disks only grow: the root disk of %(vm)s is %(old)s GiB; give %(old)s GiB or more."
        ) % {"vm": source.name, "old": root}
        raise ValidationError(message, errors={"disk_gib": [message]})
    return [disk_gib if _is_root(d) else d.size_gib for d in disks]


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


def _disk_copy(actor, clone: VirtualMachine, disk: Volume, size_gib: int) -> Volume:
    """Inside the clone's transaction: the new volume that will hold a copy of
    ``disk`` at the same device of ``clone``, charged ``size_gib`` (its size, or
    larger: grown once copied)."""
    return _new_disk(
        actor,
        clone,
        disk,
        size_gib=size_gib,
        created_from=VolumeSource.VOLUME,
        source_name=disk.name,
        host=disk.host,
        pool=disk.pool,
    )


def _snapshot_copy(actor, clone: VirtualMachine, snapshot: Snapshot, size_gib: int) -> Volume:
    """Inside the clone's transaction: the new volume that will hold a copy of
    ``snapshot`` at its disk's device of ``clone``, charged ``size_gib`` (the
    snapshot's size, or larger: grown once copied)."""
    return _new_disk(
        actor,
        clone,
        snapshot.volume,
        size_gib=size_gib,
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
        message=clone_texts.DISK_ACCEPTED
        % {"source": source_name, "size_gib": size_gib, "device": disk.device, "vm": clone.name},
    )
    volume_services._publish(copy)
    return copy
