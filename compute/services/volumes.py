"""Volume services: create, attach, detach, resize, delete, and observed status.

A volume's spec (``size_gib``, the VM and device it should be attached to) is written
here, with an audit entry and an event, in one transaction; ``volume_apply``
(:mod:`compute.tasks.volumes`) converges the backend to it after commit and reports
through :func:`volume_observe`, the only writer of ``phase``. Every write is a
row-locked read-modify-write bumping ``resource_version`` in the database.

Quota: a volume holds one reservation, ``volume:<uid>``, of ``storage`` = its size in
GiB, taken in the transaction that creates it, re-taken for the new size in the one
that grows it, released once when it is gone. A VM's root disk is such a volume: the
VM's own reservation holds cpu, memory and the VM count only, so the disk is charged
once, on the volume (VMs from before volumes were moved over by migration 0011).

Placement: a local volume lives in one host's pool (``ISOTOPE_VOLUME_POOL``) and
attaches to VMs on that host; it moves with its VM in a live migration. A Kubernetes
volume (storage class ``cluster``) is a PersistentVolumeClaim in the tenant namespace.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from compute.backends import BackendError, DiskSpec, VolumeNotFound, VolumeSpec, pool_name
from compute.choices import (
    ACTIVE_MIGRATION_PHASES,
    STORAGE_CLASS_FORMATS,
    DesiredState,
    ImageKind,
    Phase,
    StorageClass,
    VolumeFormat,
    VolumePhase,
    VolumeSource,
)
from compute.labels import label_map_errors
from compute.models import Host, Image, Migration, VirtualMachine, Volume
from compute.texts import common as common_texts
from compute.texts import volumes as volume_texts
from monitoring.services import event_publish, resource_forget, resource_publish
from portal import sql
from portal.exceptions import Conflict, NotFound, QuotaExceeded, ValidationError
from tenants.choices import ReservationKind
from tenants.models import Tenant
from tenants.services import (
    QuotaCharge,
    actor_name,
    audit_record,
    authorize,
    quota_release,
    quota_reserve,
)

logger = logging.getLogger(__name__)

EVENT_KIND = "volume"
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # fullmatch: "$" allows a "\n"
RESERVED_NAMES = frozenset({"new"})
ROOT_DEVICE = "vda"
DATA_DEVICES = tuple(f"vd{letter}" for letter in "bcdefghijklmnopqrstuvwxyz")
# A VM takes (and gives back) volumes in these phases; others are in flux.
ATTACHABLE_VM_PHASES = frozenset({Phase.RUNNING, Phase.PAUSED, Phase.STOPPED})


@dataclass(frozen=True)
class ActionRule:
    permission: str
    phases: frozenset[str]


ACTIONS: dict[str, ActionRule] = {
    "attach": ActionRule("volume.attach", frozenset({VolumePhase.READY})),
    "detach": ActionRule("volume.attach", frozenset({VolumePhase.ATTACHED})),
    "resize": ActionRule("volume.resize", frozenset({VolumePhase.READY, VolumePhase.ATTACHED})),
    "delete": ActionRule(
        "volume.delete",
        frozenset({VolumePhase.PENDING, VolumePhase.READY, VolumePhase.FAILED}),
    ),
}


def allowed_actions(volume: Volume, role: str | None) -> list[str]:
    """The actions whose buttons a user with ``role`` sees for ``volume`` right now."""
    from tenants.permissions import role_allows

    out = []
    for name, rule in ACTIONS.items():
        if volume.phase not in rule.phases or not role_allows(role, rule.permission):
            continue
        if name == "attach" and (volume.vm_id or not volume.local):
            continue
        if name == "detach" and (volume.is_root or volume.vm_id is None):
            continue
        if name == "delete" and (volume.vm_id or volume.attached_domain or has_snapshots(volume)):
            continue
        if name == "resize" and not volume.local:
            continue
        out.append(name)
    return out


def has_snapshots(volume: Volume) -> bool:
    """Whether ``volume`` has snapshots: as a list read it (``selectors.volume_list_rows``
    annotates ``has_snapshots``), else one read."""
    known = getattr(volume, "has_snapshots", None)
    return volume.snapshots.exists() if known is None else known


# --- Validation ------------------------------------------------------------------------
def _check_name(tenant: Tenant, name, errors: dict) -> str:
    name = str(name or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 63 or not NAME_RE.fullmatch(name):
        errors["name"] = [
            "Use at most 63 lowercase letters, digits and hyphens, starting and ending "
            "with a letter or digit (a DNS label)."
        ]
    elif name in RESERVED_NAMES:
        errors["name"] = [f"{name!r} is reserved; choose another name."]
    elif Volume.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [f"A volume named {name!r} exists already in {tenant.slug}."]
    return name


def parse_size(value, errors: dict, *, field: str = "size_gib", low: int = 1) -> int:
    """A whole number of GiB between ``low`` and ``ISOTOPE_MAX_VOLUME_GIB``."""
    high = settings.ISOTOPE_MAX_VOLUME_GIB
    try:
        if isinstance(value, bool) or value is None or str(value).strip() == "":
            raise ValueError
        size = int(str(value).strip())
    except (TypeError, ValueError):
        errors[field] = ["Enter a whole number of GiB."]
        return 0
    if not low <= size <= high:
        errors[field] = [f"Must be between {low} and {high} GiB."]
    return size


def _check_device(device, errors: dict) -> str:
    device = str(device or "").strip()
    if device and device not in DATA_DEVICES:
        errors["device"] = ["Choose a data disk: vdb to vdz (vda is a VM's root disk)."]
    return device


def _image_for(tenant: Tenant, image) -> Image | None:
    from django.db.models import Q

    visible = Image.objects.filter(Q(public=True) | Q(tenant=tenant))
    if isinstance(image, Image):
        return visible.filter(pk=image.pk).first()
    return visible.filter(name=str(image)).order_by("public").first()


def next_device(vm: VirtualMachine) -> str:
    """The first free data device of ``vm`` (call with the VM row locked)."""
    used = set(Volume.objects.filter(vm=vm).values_list("device", flat=True))
    for device in DATA_DEVICES:
        if device not in used:
            return device
    raise Conflict(
        gettext("%(vm)s has no free disk device left (vdb to vdz are in use).") % {"vm": vm.name},
        errors={"device": [gettext("No free device.")]},
    )


def _file_name(uid: uuid.UUID, fmt: str) -> str:
    return f"vol-{uid}.{'qcow2' if fmt == VolumeFormat.QCOW2 else 'img'}"


# --- Create ----------------------------------------------------------------------------
def volume_create(
    *,
    actor,
    tenant: Tenant,
    name: str,
    size_gib,
    storage_class: str = StorageClass.LOCAL,
    format: str = "",  # noqa: A002 - the volume's format, as the API names it
    image=None,
    vm: VirtualMachine | None = None,
    device: str = "",
    labels: dict | None = None,
) -> Volume:
    """Validate, reserve ``storage`` quota, place and save ``Pending``; the task creates
    the storage after commit (and attaches it to ``vm`` at ``device``, or its first free
    one, when a VM is given).

    A local volume is placed on ``vm``'s host, else on the host with the fewest GiB of
    volumes; a ``cluster`` volume becomes a claim on the default Kubernetes cluster.
    Nothing is created or reserved when a step fails; a quota refusal is a Warning
    event.
    """
    authorize(actor=actor, tenant=tenant, permission="volume.create", target=f"volume/{name}")
    if vm is not None:
        authorize(actor=actor, tenant=tenant, permission="volume.attach", target=f"vm/{vm.name}")
    errors: dict[str, list[str]] = {}
    name = _check_name(tenant, name, errors)
    size = parse_size(size_gib, errors)
    if storage_class not in StorageClass.values:
        errors["storage_class"] = [f"Choose one of {', '.join(StorageClass.values)}."]
        storage_class = StorageClass.LOCAL
    formats = STORAGE_CLASS_FORMATS[storage_class]
    fmt = format or formats[0]
    if fmt not in formats:
        errors["format"] = [f"A {storage_class} volume is {' or '.join(formats)}."]
    image_obj = None
    if image not in (None, ""):
        image_obj = _image_for(tenant, image)
        if image_obj is None:
            errors["image"] = ["Choose one of the images available to this tenant."]
        elif image_obj.kind != ImageKind.DISK or not image_obj.disk_path:
            errors["image"] = [f"{image_obj} is a kernel image: it has no disk to copy."]
        elif storage_class != StorageClass.LOCAL:
            errors["image"] = ["Only local volumes are made from images."]
    label_errors = label_map_errors(labels)
    if label_errors:
        errors["labels"] = label_errors
    device = _check_device(device, errors)
    if vm is not None and storage_class != StorageClass.LOCAL:
        errors["vm"] = ["Kubernetes volumes are mounted by workloads, not attached to VMs."]
    if errors:
        raise ValidationError(gettext("The volume is not valid."), errors=errors)
    cluster = None
    if storage_class == StorageClass.CLUSTER:
        from compute.services.workloads import default_cluster

        cluster = default_cluster()
        if cluster is None:
            raise Conflict(
                gettext("No Kubernetes cluster is registered; ask a platform admin to add one."),
                errors={"storage_class": [gettext("No cluster available.")]},
            )
    uid = uuid.uuid4()
    try:
        with transaction.atomic():
            if cluster is not None:
                from compute.models import TenantNamespace

                TenantNamespace.objects.get_or_create(
                    tenant=tenant, cluster=cluster, defaults={"name": tenant.namespace}
                )
            host = None
            if vm is not None:
                vm = _attachable_vm(vm, tenant)
                if device and Volume.objects.filter(vm=vm, device=device).exists():
                    raise Conflict(
                        gettext("%(device)s of %(vm)s is taken.")
                        % {"device": device, "vm": vm.name},
                        errors={"device": [gettext("Taken.")]},
                    )
                device, host = device or next_device(vm), vm.host
            else:
                device = ""
            quota_reserve(
                tenant=tenant,
                ref=f"volume:{uid}",
                storage=size,
                kind=ReservationKind.VOLUME,
                object_id=str(uid),
            )
            if storage_class == StorageClass.LOCAL and host is None:
                from compute.scheduler import schedule_volume

                host = schedule_volume(size_gib=size)
            volume = Volume.objects.create(
                uid=uid,
                tenant=tenant,
                name=name,
                size_gib=size,
                storage_class=storage_class,
                format=fmt,
                phase=VolumePhase.PENDING,
                created_from=VolumeSource.IMAGE if image_obj else VolumeSource.BLANK,
                source_image=image_obj,
                source_name=image_obj.name if image_obj else "",
                vm=vm,
                device=device,
                host=host,
                pool=pool_name() if host else "",
                backend_name=_file_name(uid, fmt) if host else name,
                cluster=cluster,
                labels=labels or {},
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            detail = {"size_gib": size, "storage_class": storage_class, "format": fmt}
            if image_obj:
                detail["image"] = image_obj.name
            if vm is not None:
                detail.update(vm=vm.name, device=device)
            if host is not None:
                detail["host"] = host.name
            audit_record(
                actor=actor,
                action="volume.create",
                tenant=tenant,
                target=f"volume/{name}",
                detail=detail,
            )
            accepted = {"size": size, "disk_format": fmt, "storage_class": storage_class}
            if image_obj:
                accepted["image"] = image_obj.name
            if vm is not None:
                accepted.update(vm=vm.name, device=device)
            if image_obj and vm is not None:
                message = volume_texts.ACCEPTED_FROM_IMAGE_TO_ATTACH % accepted
            elif image_obj:
                message = volume_texts.ACCEPTED_FROM_IMAGE % accepted
            elif vm is not None:
                message = volume_texts.ACCEPTED_TO_ATTACH % accepted
            else:
                message = volume_texts.ACCEPTED % accepted
            event_publish(
                tenant=tenant,
                kind=EVENT_KIND,
                name=name,
                uid=str(uid),
                reason="Accepted",
                message=message,
                new_object=True,
            )
            _publish(volume)
            transaction.on_commit(lambda: _enqueue(volume))
    except IntegrityError:
        raise ValidationError(
            gettext("A volume with this name exists already."), errors={"name": [gettext("Taken.")]}
        ) from None
    except QuotaExceeded as error:
        event_publish(
            tenant=tenant,
            kind=EVENT_KIND,
            name=name,
            type="Warning",
            reason="QuotaExceeded",
            message=error.stored_message,
        )
        raise
    return volume


def _attachable_vm(vm: VirtualMachine, tenant: Tenant) -> VirtualMachine:
    """``vm`` locked, after checking that it may take a volume now."""
    vm = (
        VirtualMachine.objects.select_for_update(of=("self",))
        .select_related("tenant", "host")
        .get(pk=vm.pk)
    )
    if vm.tenant_id != tenant.pk:
        raise NotFound(
            gettext("Virtual machine %(vm)s not found in %(tenant)s.")
            % {"vm": repr(vm.name), "tenant": tenant.slug}
        )
    if vm.phase not in ATTACHABLE_VM_PHASES or vm.desired_state == DesiredState.DELETED:
        raise Conflict(
            gettext("%(vm)s is %(phase)s: volumes attach to running, paused or stopped VMs.")
            % {"vm": vm.name, "phase": vm.phase},
            errors={"vm": [gettext("%(vm)s is %(phase)s.") % {"vm": vm.name, "phase": vm.phase}]},
        )
    if Migration.objects.filter(vm=vm, phase__in=ACTIVE_MIGRATION_PHASES).exists():
        raise Conflict(
            gettext("%(vm)s is being migrated; attach the volume once it has arrived.")
            % {"vm": vm.name},
            errors={"vm": [gettext("Migrating.")]},
        )
    return vm


# --- Root disks of VMs -----------------------------------------------------------------
def root_volume_name(vm_name: str, tenant: Tenant, disk: str = "root") -> str:
    """``<vm>-root`` (or ``<vm>-<disk>``), with a number after it when a volume has
    that name already."""
    base = f"{vm_name[:58]}-{disk}"
    taken = set(
        Volume.objects.filter(tenant=tenant, name__startswith=vm_name[:55]).values_list(
            "name", flat=True
        )
    )
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{vm_name[:55]}-{disk}{n}"
    return name


def root_volume_create(
    *, actor, vm: VirtualMachine, size_gib: int, image: Image, quota: QuotaCharge
) -> Volume:
    """The new VM's root disk (``vda``, deleted with the VM), inside ``vm_create``'s
    transaction: its storage is charged here, on the volume, and only here (recorded on
    the create's ``quota``, charged with the VM's at the create's end)."""
    uid = uuid.uuid4()
    from_image = image.kind == ImageKind.DISK and bool(image.disk_path)
    quota.reserve(
        ref=f"volume:{uid}", kind=ReservationKind.VOLUME, object_id=str(uid), storage=size_gib
    )
    volume = Volume.objects.create(
        uid=uid,
        tenant=vm.tenant,
        name=root_volume_name(vm.name, vm.tenant),
        size_gib=size_gib,
        storage_class=StorageClass.LOCAL,
        format=VolumeFormat.QCOW2,
        phase=VolumePhase.PENDING,
        created_from=VolumeSource.IMAGE if from_image else VolumeSource.BLANK,
        source_image=image if from_image else None,
        source_name=image.name if from_image else "",
        vm=vm,
        device=ROOT_DEVICE,
        delete_with_vm=True,
        host=vm.host,
        pool=pool_name(),
        backend_name=_file_name(uid, VolumeFormat.QCOW2),
        created_by=vm.created_by,
    )
    audit_record(
        actor=actor,
        action="volume.create",
        tenant=vm.tenant,
        target=f"volume/{volume.name}",
        detail={"size_gib": size_gib, "vm": vm.name, "device": ROOT_DEVICE, "root": True},
    )
    event_publish(
        tenant=vm.tenant,
        kind=EVENT_KIND,
        name=volume.name,
        uid=str(uid),
        reason="Accepted",
        new_object=True,
        message=volume_texts.ROOT_ACCEPTED_FROM_IMAGE
        % {"size": size_gib, "vm": vm.name, "image": image.name}
        if from_image
        else volume_texts.ROOT_ACCEPTED % {"size": size_gib, "vm": vm.name},
    )
    _publish(volume)
    return volume


def boot_volume(tenant: Tenant, volume) -> Volume:
    """The tenant's Ready, unattached local volume ``volume`` (a name or a Volume),
    locked, to become a new VM's root disk; ``ValidationError``/``Conflict`` if not."""
    name = volume.name if isinstance(volume, Volume) else str(volume or "")
    found = (
        Volume.objects.select_for_update(of=("self",))
        .select_related("host", "source_image")
        .filter(tenant=tenant, name=name)
        .first()
    )
    if found is None:
        raise ValidationError(
            gettext("No volume named %(name)s in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug},
            errors={"root_volume": [gettext("Choose one of the tenant's volumes.")]},
        )
    if not found.local:
        raise ValidationError(
            gettext("Only a local volume can be a VM's root disk."),
            errors={"root_volume": [gettext("A Kubernetes volume cannot boot a VM.")]},
        )
    if found.phase != VolumePhase.READY or found.vm_id is not None:
        raise Conflict(
            gettext("%(volume)s is %(phase)s: a VM boots from a Ready volume that no VM uses.")
            % {"volume": found.name, "phase": found.phase},
            errors={
                "root_volume": [
                    gettext("%(volume)s is %(phase)s.")
                    % {"volume": found.name, "phase": found.phase}
                ]
            },
        )
    return found


def boot_volume_take(*, actor, volume: Volume, vm: VirtualMachine) -> Volume:
    """Make ``volume`` (from :func:`boot_volume`) the root disk of the new ``vm``.
    It stays when the VM is deleted (it was the tenant's before)."""
    Volume.objects.filter(pk=volume.pk).update(
        vm=vm,
        device=ROOT_DEVICE,
        message=volume_texts.ROOT_DISK_OF % {"vm": vm.name},
        updated=timezone.now(),
        resource_version=F("resource_version") + 1,
    )
    volume.refresh_from_db()
    audit_record(
        actor=actor,
        action="volume.attach",
        tenant=vm.tenant,
        target=f"volume/{volume.name}",
        detail={"vm": vm.name, "device": ROOT_DEVICE, "root": True},
    )
    _publish(volume)
    return volume


def vm_disks(vm: VirtualMachine) -> tuple[DiskSpec, ...]:
    """The disks ``vm``'s domain is defined with: every volume attached (or being
    attached) to it, root first."""
    volumes = sql.select(
        Volume, "vm_id = %s AND storage_class = %s", [vm.pk, StorageClass.LOCAL], order_by="device"
    )  # written out (portal.sql): every define reads them
    return tuple(disk_spec(volume) for volume in volumes)


def disk_spec(volume: Volume, device: str = "") -> DiskSpec:
    return DiskSpec(
        device=device or volume.device,
        pool=volume.pool,
        volume=volume.backend_name,
        format=volume.format,
        serial=volume.serial,
    )


def volume_spec(volume: Volume) -> VolumeSpec:
    image = volume.source_image
    backing = image.disk_path if volume.created_from == VolumeSource.IMAGE and image else ""
    return VolumeSpec(
        pool=volume.pool,
        name=volume.backend_name,
        size_gib=max(volume.size_gib, volume.capacity_gib),
        format=volume.format,
        backing=backing,
        backing_format=(image.disk_format or "qcow2") if backing else "qcow2",
    )


def vm_volumes_prepare(vm: VirtualMachine, backend) -> None:
    """Before the VM's domain is defined: every volume it is defined with exists in its
    host's pool (the provisioning task calls this; safe to repeat)."""
    # A clone's or a restore's source (rare) loads when its copy is made: joining every
    # source here cost a create's provisioning more than the rest of this function.
    # Written out (portal.sql): every provisioning reads them.
    for volume in _local_volumes(vm, related=("tenant", "source_image")):
        info = _volume_make(volume, backend)
        if volume.phase == VolumePhase.PENDING:
            volume_observe(
                volume,
                VolumePhase.READY,
                "",
                reason="Created",
                event_message=volume_texts.CREATED_IN_VM_POOL % {"vm": vm.name},
                capacity_gib=info.capacity // GIB,
            )


def _volume_make(volume: Volume, backend):
    """A VM's disk exists: made blank or on its image, or copied from the volume it is
    a clone of (a cloned VM's disks), or written from the backup it is restored from
    (safe to repeat: an existing one is kept)."""
    if volume.created_from == VolumeSource.BACKUP:
        from compute.services.backups import volume_from_backup

        return volume_from_backup(volume, backend)
    if volume.created_from not in (VolumeSource.VOLUME, VolumeSource.SNAPSHOT):
        return backend.volume_create(volume_spec(volume))
    try:
        info = backend.volume_info(volume.pool, volume.backend_name)
    except VolumeNotFound:
        if volume.phase != VolumePhase.PENDING:
            # Copied once already: copying the source again now would not bring back
            # what this disk held.
            raise BackendError(volume_texts.NAMED_STORAGE_GONE % {"volume": volume.name}) from None
        info = _copy_source(volume, backend)
    if volume.phase == VolumePhase.PENDING and info.capacity < volume.size_gib * GIB:
        # A copy asked larger than its source (a clone to a bigger size): grown through
        # the storage API once copied (again on a retry that finds it copied, not grown).
        info = backend.volume_resize(volume.pool, volume.backend_name, volume.size_gib)
    return info


def _copy_source(volume: Volume, backend):
    """Copy the volume (created_from ``volume`` or ``snapshot``) from its source, at
    the source's size (:func:`_volume_make` grows it when it is asked larger)."""
    if volume.created_from == VolumeSource.SNAPSHOT:
        from compute.services.snapshots import snapshot_spec

        snapshot = volume.source_snapshot
        if snapshot is None:
            raise BackendError(
                volume_texts.SOURCE_SNAPSHOT_GONE
                % {"volume": volume.name, "source": volume.source_name}
            )
        source = snapshot_spec(snapshot)
    else:
        if volume.source_volume is None:
            raise BackendError(
                volume_texts.SOURCE_VOLUME_GONE
                % {"volume": volume.name, "source": volume.source_name}
            )
        source = volume_spec(volume.source_volume)
    try:
        return backend.volume_clone(source, replace(volume_spec(volume), size_gib=source.size_gib))
    except VolumeNotFound as error:
        raise BackendError(str(error)) from None


def _local_volumes(vm: VirtualMachine, related: tuple[str, ...]) -> list[Volume]:
    """``vm``'s volumes in a host's pool, by key, with ``related`` (portal.sql)."""
    table = Volume._meta.db_table
    return sql.select(
        Volume,
        f"{table}.vm_id = %s AND {table}.storage_class = %s",
        [vm.pk, StorageClass.LOCAL],
        related=related,
        order_by=f"{table}.id",
    )


def vm_volumes_attached(vm: VirtualMachine) -> None:
    """The VM's domain is defined with its volumes: they are attached."""
    for volume in _local_volumes(vm, related=("tenant",)):
        if volume.attached_domain == vm.domain_name and volume.phase == VolumePhase.ATTACHED:
            continue
        volume_attached(volume, vm)


def volume_attached(volume: Volume, vm: VirtualMachine) -> Volume:
    """The backend has the volume on ``vm``'s domain at its device."""
    return volume_observe(
        volume,
        VolumePhase.ATTACHED,
        "",
        reason="Attached",
        event_message=volume_texts.ATTACHED % {"vm": vm.name, "device": volume.device},
        attached_domain=vm.domain_name,
        attached_device=volume.device,
    )


def vm_volumes_release(vm: VirtualMachine, backend) -> None:
    """The VM's domain is gone: its own root disk goes too (quota released once), the
    other volumes stay, detached and Ready. A root disk with snapshots stays as well:
    its snapshots are copies of it and are deleted by a person, not with the VM."""
    for volume in Volume.objects.filter(vm=vm).select_related("tenant", "vm"):
        kept = volume.snapshots.exists()
        if volume.delete_with_vm and not kept:
            if volume.local and volume.host_id:
                backend.volume_delete(volume.pool, volume.backend_name)
            volume_finalize_delete(volume, vm_name=vm.name)
        else:
            detached = (
                volume_texts.DETACHED_VM_DELETED_KEPT
                if volume.delete_with_vm
                else volume_texts.DETACHED_VM_DELETED
            )
            volume_observe(
                volume,
                VolumePhase.READY,
                "",
                reason="Detached",
                event_message=detached % {"vm": vm.name},
                vm=None,
                device="",
                attached_domain="",
                attached_device="",
            )


# --- Attach, detach --------------------------------------------------------------------
def _locked(volume: Volume) -> Volume:
    found = (
        Volume.objects.select_for_update(of=("self",))
        .select_related("tenant", "vm", "host")
        .filter(pk=volume.pk)
        .first()
    )
    if found is None:
        raise NotFound(gettext("Volume %(volume)s not found.") % {"volume": repr(volume.name)})
    return found


def _requested(
    actor,
    volume: Volume,
    *,
    action: str,
    reason: str,
    message: str,
    args: dict | None = None,
    detail: dict | None = None,
) -> None:
    """Inside a change's transaction: audit it, say it on the volume's timeline, push
    the new state, and converge after commit. ``message`` is a format of
    :mod:`compute.texts.volumes`: ``args`` fill it, with who asked as ``actor``."""
    audit_record(
        actor=actor,
        action=action,
        tenant=volume.tenant,
        target=f"volume/{volume.name}",
        detail=detail,
    )
    event_publish(
        tenant=volume.tenant,
        kind=EVENT_KIND,
        name=volume.name,
        uid=str(volume.uid),
        reason=reason,
        message=message % {**(args or {}), "actor": actor_name(actor)},
    )
    _publish(volume)
    transaction.on_commit(lambda: _enqueue(volume))


def _save(volume: Volume, **fields) -> Volume:
    """Write spec fields of a locked volume, bumping its resourceVersion."""
    Volume.objects.filter(pk=volume.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    volume.refresh_from_db()
    return volume


def volume_attach(*, actor, volume: Volume, vm: VirtualMachine, device: str = "") -> Volume:
    """Attach a Ready volume to ``vm`` (running: hot-plugged; stopped: at next start),
    at ``device`` or the VM's first free one. ``NotFound`` for another tenant's VM;
    ``Conflict`` when either side is busy or the volume lives on another host."""
    authorize(
        actor=actor,
        tenant=volume.tenant,
        permission="volume.attach",
        target=f"volume/{volume.name}",
    )
    errors: dict[str, list[str]] = {}
    device = _check_device(device, errors)
    if errors:
        raise ValidationError(gettext("Invalid device."), errors=errors)
    with transaction.atomic():
        # Lock order volume → VM, as the API (which locks the volume for If-Match).
        volume = _locked(volume)
        vm = _attachable_vm(vm, volume.tenant)
        if volume.vm_id is not None:
            raise Conflict(
                gettext("%(volume)s is attached to %(vm)s already.")
                % {"volume": volume.name, "vm": volume.vm.name},
                errors={"vm": [gettext("Attached to %(vm)s.") % {"vm": volume.vm.name}]},
            )
        if not volume.local:
            raise Conflict(
                gettext("%(volume)s is a Kubernetes volume: workloads mount it, VMs do not.")
                % {"volume": volume.name},
                errors={"vm": [gettext("Not a local volume.")]},
            )
        if volume.phase != VolumePhase.READY:
            raise Conflict(
                gettext("Cannot attach %(volume)s while it is %(phase)s.")
                % {"volume": volume.name, "phase": volume.phase},
                errors={
                    "phase": [
                        gettext("attach is not possible in phase %(phase)s.")
                        % {"phase": volume.phase}
                    ]
                },
            )
        if volume.host_id != vm.host_id:
            raise Conflict(
                gettext(
                    "%(volume)s is stored on another host than %(vm)s: a local volume attaches "
                    "only to VMs on the host that holds it."
                )
                % {"volume": volume.name, "vm": vm.name},
                errors={"vm": [gettext("On another host.")]},
            )
        if device and Volume.objects.filter(vm=vm, device=device).exists():
            raise Conflict(
                gettext("%(device)s of %(vm)s is taken.") % {"device": device, "vm": vm.name},
                errors={"device": [gettext("Taken.")]},
            )
        device = device or next_device(vm)
        volume = _save(
            volume,
            vm=vm,
            device=device,
            message=volume_texts.ATTACHING % {"vm": vm.name, "device": device},
        )
        _requested(
            actor,
            volume,
            action="volume.attach",
            reason="Attaching",
            message=volume_texts.ATTACH_REQUESTED,
            args={"vm": vm.name, "device": device},
            detail={"vm": vm.name, "device": device},
        )
    return volume


def volume_detach(*, actor, volume: Volume) -> Volume:
    """Detach a data volume from its VM (the running guest lets go of it first)."""
    authorize(
        actor=actor,
        tenant=volume.tenant,
        permission="volume.attach",
        target=f"volume/{volume.name}",
    )
    with transaction.atomic():
        volume = _locked(volume)
        if volume.vm_id is None:
            raise Conflict(
                gettext("%(volume)s is not attached to a VM.") % {"volume": volume.name},
                errors={"vm": [gettext("Not attached.")]},
            )
        vm = volume.vm
        if volume.is_root:
            raise Conflict(
                gettext("%(volume)s is the root disk of %(vm)s; it stays while the VM exists.")
                % {"volume": volume.name, "vm": vm.name},
                errors={"device": [gettext("The root disk.")]},
            )
        if vm.phase == Phase.MIGRATING or (
            Migration.objects.filter(vm=vm, phase__in=ACTIVE_MIGRATION_PHASES).exists()
        ):
            raise Conflict(
                gettext("%(vm)s is being migrated; detach the volume once it has arrived.")
                % {"vm": vm.name},
                errors={"vm": [gettext("Migrating.")]},
            )
        device = volume.device
        volume = _save(volume, vm=None, device="", message=volume_texts.DETACHING % {"vm": vm.name})
        _requested(
            actor,
            volume,
            action="volume.detach",
            reason="Detaching",
            message=volume_texts.DETACH_REQUESTED,
            args={"vm": vm.name, "device": device},
            detail={"vm": vm.name, "device": device},
        )
    return volume


# --- Resize ----------------------------------------------------------------------------
def volume_resize(*, actor, volume: Volume, size_gib) -> Volume:
    """Grow a volume to ``size_gib`` (never shrink); the quota is re-charged for the new
    size in the same transaction. An attached volume of a running VM grows online."""
    authorize(
        actor=actor,
        tenant=volume.tenant,
        permission="volume.resize",
        target=f"volume/{volume.name}",
    )
    errors: dict[str, list[str]] = {}
    size = parse_size(size_gib, errors)
    if errors:
        raise ValidationError(gettext("Invalid size."), errors=errors)
    try:
        with transaction.atomic():
            volume = _locked(volume)
            if size <= volume.size_gib:
                message = (
                    f"Volumes only grow: {volume.name} is {volume.size_gib} GiB; "
                    f"give more than that."
                )
                raise ValidationError(message, errors={"size_gib": [message]})
            if not volume.local:
                raise Conflict(
                    gettext(
                        "Kubernetes volume claims cannot grow here: their storage class does "
                        "not allow expansion."
                    ),
                    errors={"storage_class": [gettext("No expansion.")]},
                )
            if volume.phase not in ACTIONS["resize"].phases:
                raise Conflict(
                    gettext("Cannot resize %(volume)s while it is %(phase)s.")
                    % {"volume": volume.name, "phase": volume.phase},
                    errors={
                        "phase": [
                            gettext("resize is not possible in phase %(phase)s.")
                            % {"phase": volume.phase}
                        ]
                    },
                )
            old = volume.size_gib
            _recharge(volume, size)
            volume = _save(volume, size_gib=size, message=volume_texts.GROWING % {"size": size})
            if volume.is_root and volume.vm_id:
                # The VM's spec shows its root disk's size.
                VirtualMachine.objects.filter(pk=volume.vm_id).update(
                    disk_gib=size,
                    updated=timezone.now(),
                    resource_version=F("resource_version") + 1,
                )
            _requested(
                actor,
                volume,
                action="volume.resize",
                reason="Resizing",
                message=volume_texts.GROW_REQUESTED,
                args={"old": old, "size": size},
                detail={"from": old, "to": size},
            )
    except QuotaExceeded as error:
        event_publish(
            tenant=volume.tenant,
            kind=EVENT_KIND,
            name=volume.name,
            type="Warning",
            reason="QuotaExceeded",
            message=error.stored_message,
        )
        raise
    return volume


def _recharge(volume: Volume, size_gib: int) -> None:
    """Charge the volume's reservation for ``size_gib`` instead (in the caller's
    transaction; ``QuotaExceeded`` rolls the release back with it)."""
    quota_release(volume.quota_ref)
    quota_reserve(
        tenant=volume.tenant,
        ref=volume.quota_ref,
        storage=size_gib,
        kind=ReservationKind.VOLUME,
        object_id=str(volume.uid),
    )


def volume_resize_failed(volume: Volume, message: str, *, size_gib: int) -> Volume:
    """The backend could not grow the volume to ``size_gib`` (the size its task tried):
    the spec, the quota and a root disk's size on its VM go back to the size the volume
    really has. A larger size asked for since stands: its own task grows the volume
    next, and this failure is only said on the timeline."""
    with transaction.atomic():
        volume = _locked(volume)
        if volume.size_gib != size_gib:
            event_publish(
                tenant=volume.tenant,
                kind=EVENT_KIND,
                name=volume.name,
                uid=str(volume.uid),
                type="Warning",
                reason="ResizeFailed",
                message=volume_texts.GROW_TO_FAILED % {"size": size_gib, "message": message},
            )
            return volume
        size = max(volume.capacity_gib, 1)
        if volume.size_gib != size:
            _recharge(volume, size)
            volume = _save(volume, size_gib=size)
            if volume.is_root and volume.vm_id:
                VirtualMachine.objects.filter(pk=volume.vm_id, disk_gib=size_gib).update(
                    disk_gib=size,
                    updated=timezone.now(),
                    resource_version=F("resource_version") + 1,
                )
        return volume_observe(
            volume,
            volume.phase,
            volume_texts.GROW_FAILED % {"message": message},
            reason="ResizeFailed",
            event_type="Warning",
        )


# --- Delete ----------------------------------------------------------------------------
def volume_delete(*, actor, volume: Volume) -> Volume:
    """Mark a detached volume Deleting; the task removes its storage, then the quota is
    released (once) and the row dropped by :func:`volume_finalize_delete`."""
    authorize(
        actor=actor,
        tenant=volume.tenant,
        permission="volume.delete",
        target=f"volume/{volume.name}",
    )
    with transaction.atomic():
        volume = _locked(volume)
        if volume.vm_id is not None or volume.attached_domain:
            where = volume.vm.name if volume.vm_id else "its VM"
            raise Conflict(
                gettext("%(volume)s is attached to %(where)s: detach it first.")
                % {"volume": volume.name, "where": where},
                errors={"vm": [gettext("Attached.")]},
            )
        if volume.phase not in ACTIONS["delete"].phases:
            raise Conflict(
                gettext("Cannot delete %(volume)s while it is %(phase)s.")
                % {"volume": volume.name, "phase": volume.phase},
                errors={
                    "phase": [
                        gettext("delete is not possible in phase %(phase)s.")
                        % {"phase": volume.phase}
                    ]
                },
            )
        if volume.snapshots.exists():
            names = sorted(volume.snapshots.values_list("name", flat=True))
            raise Conflict(
                gettext("%(volume)s has snapshots (%(names)s): delete them first.")
                % {"volume": volume.name, "names": ", ".join(names)},
                errors={"snapshots": names},
            )
        if not volume.local:
            users = claim_users(volume)
            if users:
                raise Conflict(
                    gettext(
                        "%(volume)s is mounted by %(workloads)s: delete or change those workloads "
                        "first."
                    )
                    % {"volume": volume.name, "workloads": ", ".join(users)},
                    errors={"workloads": users},
                )
        volume = _save(volume, phase=VolumePhase.DELETING, message="", phase_changed=timezone.now())
        _requested(
            actor,
            volume,
            action="volume.delete",
            reason="Deleting",
            message=volume_texts.DELETE_REQUESTED,
        )
    return volume


def claim_users(volume: Volume) -> list[str]:
    """Names of the workloads whose pods mount this Kubernetes volume."""
    from compute.models import Workload

    return sorted(
        w.name
        for w in Workload.objects.filter(tenant_id=volume.tenant_id).only("name", "volumes")
        if any(m.get("volume") == volume.name for m in w.volumes or [])
    )


def volume_finalize_delete(volume: Volume, *, vm_name: str = "") -> None:
    """The storage is gone: drop the row and release its quota, both exactly once
    (``vm_name``: it went with that VM)."""
    with transaction.atomic():
        deleted, _ = Volume.objects.filter(pk=volume.pk).delete()
        if not deleted:
            return
        released = quota_release(volume.quota_ref)
        if vm_name:
            deleted = (
                volume_texts.DELETED_WITH_VM_QUOTA_RELEASED
                if released
                else volume_texts.DELETED_WITH_VM
            )
        else:
            deleted = volume_texts.DELETED_QUOTA_RELEASED if released else volume_texts.DELETED
        event_publish(
            tenant=volume.tenant,
            kind=EVENT_KIND,
            name=volume.name,
            uid=str(volume.uid),
            reason="Deleted",
            message=deleted % {"vm": vm_name},
        )
        resource_forget(tenant=volume.tenant, kind=EVENT_KIND, name=volume.name)


# --- Observed state (tasks) --------------------------------------------------------------
def volume_observe(
    volume: Volume,
    phase: str | None = None,
    message: str | None = None,
    *,
    reason: str | None = None,
    event_type: str = "Normal",
    event_message: str | None = None,
    deleting: bool = False,
    **fields,
) -> Volume:
    """Record what the backend shows (phase, capacity, attachment) under the row lock;
    an event when the phase or message changes. A deleted volume is left alone.

    A delete asked for while a task was on its way stands: a volume now Deleting stays
    Deleting (with its message, and its ``vm`` and ``device``) unless ``deleting`` (the
    observation is of the deletion itself, e.g. that it failed). So a create that ends
    after the delete was asked does not undo it, and the delete's task, next, removes
    what the create made. What the backend shows (capacity, the attached domain and
    device) is written either way."""
    with transaction.atomic():
        current = (
            Volume.objects.select_for_update(of=("self",))
            .select_related("tenant", "vm", "host")
            .filter(pk=volume.pk)
            .first()
        )
        if current is None:
            return volume
        if current.phase == VolumePhase.DELETING and not deleting:
            phase, message = None, None
            fields.pop("vm", None)
            fields.pop("device", None)
        phase = phase or current.phase
        message = current.message if message is None else message[:1000]
        updates = {k: v for k, v in fields.items() if getattr(current, k) != v}
        changed = current.phase != phase or current.message != message
        if changed:
            updates.update(phase=phase, message=message, phase_changed=timezone.now())
        if not updates:
            return current
        current = _save(current, **updates)
        if changed:
            event_publish(
                tenant=current.tenant,
                kind=EVENT_KIND,
                name=current.name,
                uid=str(current.uid),
                type=event_type,
                reason=reason or phase,
                message=event_message or message or common_texts.PHASE_IS_NOW % {"phase": phase},
            )
        _publish(current)
        if "attached_domain" in updates and current.vm_id and current.attached_domain:
            event_publish(
                tenant=current.tenant,
                kind="vm",
                name=current.vm.name,
                uid=str(current.vm.uid),
                reason="VolumeAttached",
                message=volume_texts.VM_VOLUME_ATTACHED
                % {"volume": current.name, "device": current.device},
            )
        return current


def volume_fail(volume: Volume, message: str) -> Volume:
    """The task acting on ``volume`` failed: Failed, saying why (not over a delete
    asked meanwhile: see :func:`volume_observe`)."""
    return volume_observe(
        volume, VolumePhase.FAILED, message, reason="Failed", event_type="Warning"
    )


def volume_delete_failed(volume: Volume, message: str) -> Volume:
    """The deletion itself failed: Failed, saying why; a person may delete again."""
    return volume_observe(
        volume,
        VolumePhase.FAILED,
        message,
        reason="Failed",
        event_type="Warning",
        deleting=True,
    )


def volume_detached(volume: Volume, *, vm: VirtualMachine | None, device: str) -> Volume:
    """The backend let go of the volume: Ready again (or still Ready for a new VM)."""
    volume = volume_observe(
        volume,
        VolumePhase.READY,
        "",
        reason="Detached",
        event_message=volume_texts.DETACHED % {"vm": vm.name, "device": device}
        if vm
        else volume_texts.DETACHED_FROM_ITS_VM % {"device": device},
        attached_domain="",
        attached_device="",
    )
    if vm is not None:
        event_publish(
            tenant=volume.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            reason="VolumeDetached",
            message=volume_texts.VM_VOLUME_DETACHED % {"volume": volume.name, "device": device},
        )
    return volume


def volume_attach_failed(volume: Volume, message: str) -> Volume:
    """The backend refused the attachment: the volume is Ready and unattached again."""
    return volume_observe(
        volume,
        VolumePhase.READY,
        volume_texts.ATTACH_FAILED % {"message": message},
        reason="AttachFailed",
        event_type="Warning",
        vm=None,
        device="",
    )


# --- Kubernetes volume claims ------------------------------------------------------------
def claim_spec(volume: Volume):
    from compute.backends.containers import ClaimSpec

    return ClaimSpec(
        tenant=volume.tenant.slug,
        namespace=volume.tenant.namespace,
        name=volume.backend_name,
        size_gib=volume.size_gib,
        storage_class=settings.ISOTOPE_K8S_STORAGE_CLASS,
        portal_uid=str(volume.uid),
        volume_root=settings.ISOTOPE_K8S_VOLUME_ROOT,
    )


def claim_bound(volume: Volume, status) -> Volume:
    """The cluster bound the claim to a volume: Ready for pods to mount."""
    return volume_observe(
        volume,
        VolumePhase.READY,
        "",
        reason="Bound",
        event_message=volume_texts.CLAIM_BOUND
        % {"claim": volume.backend_name, "capacity": status.capacity_gib},
        capacity_gib=status.capacity_gib,
    )


def volume_refused(volume: Volume, message: str) -> Volume:
    """The API server refused the claim (its namespace quota): Failed, and its
    reservation released (deleting it later releases nothing twice)."""
    with transaction.atomic():
        quota_release(volume.quota_ref)
        return volume_observe(
            volume,
            VolumePhase.FAILED,
            volume_texts.CLAIM_REFUSED % {"message": message},
            reason="QuotaRefused",
            event_type="Warning",
        )


MAX_MOUNTS = 8
MOUNT_PATH_RE = re.compile(r"/[-._a-zA-Z0-9/]{0,254}")


def clean_mounts(tenant: Tenant, mounts, errors: dict) -> list[dict]:
    """A workload's volume mounts ``[{"volume", "mountPath", "readOnly"}]`` checked:
    Kubernetes volumes of ``tenant`` that exist and are not being deleted, absolute
    paths, each volume and path once. Problems go to ``errors["volumes"]``."""
    if mounts in (None, ""):
        return []
    if not isinstance(mounts, list | tuple) or len(mounts) > MAX_MOUNTS:
        errors["volumes"] = [f"A list of at most {MAX_MOUNTS} mounts."]
        return []
    clean, problems, paths = [], [], set()
    names = [m.get("volume") for m in mounts if isinstance(m, dict)]
    found = {
        v.name: v for v in Volume.objects.filter(tenant=tenant, name__in=[n for n in names if n])
    }
    for mount in mounts:
        if not isinstance(mount, dict) or set(mount) - {"volume", "mountPath", "readOnly"}:
            problems.append('Each mount is {"volume", "mountPath", "readOnly"}.')
            continue
        name, path = str(mount.get("volume") or ""), str(mount.get("mountPath") or "")
        read_only = mount.get("readOnly", False)
        volume = found.get(name)
        if volume is None:
            problems.append(f"No volume named {name!r} in {tenant.slug}.")
        elif volume.local:
            problems.append(f"{name} is a local VM disk; pods mount Kubernetes volumes.")
        elif volume.phase in (VolumePhase.DELETING, VolumePhase.FAILED):
            problems.append(f"{name} is {volume.phase}.")
        elif not MOUNT_PATH_RE.fullmatch(path) or "/../" in f"{path}/":
            problems.append(f"{path!r} is not an absolute path (letters, digits, - . _ /).")
        elif path in paths or any(c["volume"] == name for c in clean):
            problems.append(f"{name} or {path} is mounted twice.")
        elif not isinstance(read_only, bool):
            problems.append("readOnly is true or false.")
        else:
            paths.add(path)
            clean.append({"volume": name, "mountPath": path, "readOnly": read_only})
    if problems:
        errors["volumes"] = problems
    return clean


# --- Live migration ----------------------------------------------------------------------
def migrating_volumes(vm: VirtualMachine) -> list[Volume]:
    """The VM's volumes in its host's own pool: their data is copied in a migration."""
    return list(
        Volume.objects.filter(vm=vm, storage_class=StorageClass.LOCAL, pool=pool_name())
        .select_related("source_image")
        .order_by("device")
    )


def migration_volumes_prepare(vm: VirtualMachine, target_backend) -> tuple[str, ...]:
    """Pre-create, on the target host, a volume of the same pool, name, size and format
    (and base image) for each local volume of ``vm``; returns their devices."""
    devices = []
    for volume in migrating_volumes(vm):
        target_backend.volume_create(volume_spec(volume))
        devices.append(volume.device)
    return tuple(devices)


def migration_volumes_gib(vm: VirtualMachine) -> int:
    """GiB of data a migration of ``vm`` copies besides memory (its data volumes; the
    root disk counts in ``disk_gib`` already)."""
    return sum(v.size_gib for v in migrating_volumes(vm) if not v.is_root)


def volumes_follow_vm(vm: VirtualMachine, host: Host) -> None:
    """Inside the migration's success transaction: the VM's volumes are on ``host``."""
    for volume in Volume.objects.filter(vm=vm).exclude(host=host).select_related("tenant"):
        _save(volume, host=host)


def migration_volumes_cleanup(vm: VirtualMachine, backend) -> None:
    """Remove the copies of ``vm``'s local volumes on ``backend``'s host: the source's
    after a migration succeeded, the target's pre-created ones after it failed."""
    for volume in migrating_volumes(vm):
        try:
            backend.volume_delete(volume.pool, volume.backend_name)
        except Exception as error:  # noqa: BLE001 - a leftover file, logged, never fatal
            logger.warning("could not remove %s's copy of %s: %s", vm, volume, error)


# --- Lost tasks ----------------------------------------------------------------------------
def volumes_stale() -> list[Volume]:
    """Volumes whose spec and status still differ after ``ISOTOPE_STUCK_SECONDS``
    without a task holding them (their task was lost, e.g. the worker was killed):
    to be driven again. Failed ones wait for a person."""
    from datetime import timedelta

    from django.core.cache import cache
    from django.db.models import Q

    cutoff = timezone.now() - timedelta(seconds=settings.ISOTOPE_STUCK_SECONDS)
    differing = (
        Q(phase__in=[VolumePhase.PENDING, VolumePhase.DELETING])
        | Q(vm__isnull=False, attached_domain="", phase=VolumePhase.READY)
        | Q(vm__isnull=True, phase=VolumePhase.ATTACHED)
        | Q(capacity_gib__lt=F("size_gib"), phase__in=[VolumePhase.READY, VolumePhase.ATTACHED])
    )
    rows = Volume.objects.filter(differing, updated__lt=cutoff).select_related("tenant")
    return [v for v in rows if cache.get(f"isotope:volume-lock:{v.pk}") is None]


def volumes_redrive() -> list[int]:
    """Enqueue the task of every stale volume (beat); returns their ids."""
    stale = volumes_stale()
    for volume in stale:
        logger.warning("volume %s stuck (%s): driving it again", volume, volume.phase)
        _enqueue(volume)
    return [v.pk for v in stale]


# --- Live state ------------------------------------------------------------------------
GIB = 1024**3


def volume_state(volume: Volume) -> dict:
    """What live pages need to redraw a volume (phase, attachment, buttons by role)."""
    return {
        "phase": volume.phase,
        "message": volume.message,
        "sizeGiB": volume.size_gib,
        "capacityGiB": volume.capacity_gib,
        "storageClass": volume.storage_class,
        "format": volume.format,
        "vm": volume.vm.name if volume.vm_id else None,
        "device": volume.device,
        "serial": volume.serial,
        "root": volume.is_root,
        "uid": str(volume.uid),
        "resourceVersion": str(volume.resource_version),
        "actionsByRole": {
            role: allowed_actions(volume, role) for role in ("viewer", "operator", "admin")
        },
    }


def _publish(volume: Volume) -> None:
    resource_publish(
        tenant=volume.tenant, kind=EVENT_KIND, name=volume.name, data=volume_state(volume)
    )


def _enqueue(volume: Volume) -> None:
    from compute.tasks import volumes as tasks

    task = tasks.volume_apply if volume.local else tasks.claim_apply
    task.delay(volume.pk)
