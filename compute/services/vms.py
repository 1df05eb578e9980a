"""Virtual machine services: create, act, update, delete, and status changes.

Each user action validates, records the desired state and an audit entry in one
transaction, then enqueues a Celery task on commit; tasks, the reconciler and the
migration task report what they observe through :func:`vm_observe`.

Who writes ``phase``: :func:`vm_create` writes ``Pending``; :func:`vm_action` writes the
transitional phase a user's action shows while its task runs (``Starting``,
``Stopping``, ``Deleting``) together with the new desired state; every other phase is
observed and written by :func:`vm_observe` (from the libvirt tasks, the reconciler and
the live-migration services). Nothing else writes it.

Concurrency: every write locks the VM's row and increments ``resource_version`` in the
database. A user's action (or a resize) also increments ``generation``; an observer's
copy carries the generation its observation was made against, and :func:`vm_observe`
does not write the phase of an observation that a newer action superseded, so a stale
"Running" can never undo a stop that was asked for after it was read.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from compute.choices import (
    SLOT_MIGRATION_PHASES,
    ConditionStatus,
    DesiredState,
    ImageKind,
    ImagePhase,
    Phase,
    RestartPolicy,
    VolumePhase,
)
from compute.labels import label_map_errors, labels_changed_message
from compute.models import Flavor, Host, Image, Migration, VirtualMachine, Volume
from compute.scheduler import HostTaken, check_host, confirm, lock_hosts, schedule
from compute.services import dispatch, edits
from compute.services import networks as network_services
from compute.services import volumes as volume_services
from compute.services.readiness import (
    boot_fields,
    ready_condition,
    ready_event,
    ready_fields,
    ready_on_phase,
)
from compute.texts import common as common_texts
from compute.texts import vms as vm_texts
from monitoring.formats import timestamp
from monitoring.services import event_publish, resource_forget, resource_publish
from portal import sql
from portal.exceptions import Conflict, NotFound, QuotaExceeded, ValidationError
from portal.models import observation_current
from tenants.choices import ReservationKind
from tenants.models import Tenant
from tenants.services import (
    QuotaCharge,
    actor_name,
    audit_record,
    authorize,
    quota_fits_sql,
    quota_release,
    quota_reserve,
)

logger = logging.getLogger(__name__)

# Matched with fullmatch: "$" would also accept a trailing newline.
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# Names the web UI uses as path segments next to VM names (/t/<t>/vms/new/).
RESERVED_NAMES = frozenset({"new"})
MAX_VCPUS = 64
MAX_MEMORY_MIB = 512 * 1024
MAX_DISK_GIB = 4096


@dataclass(frozen=True)
class ActionRule:
    permission: str
    phases: frozenset[str]
    desired: str | None
    phase: str | None
    verb: str


# Which phases allow which action, what it asks for, and the phase it shows meanwhile.
ACTIONS: dict[str, ActionRule] = {
    "start": ActionRule(
        "vm.operate",
        frozenset({Phase.STOPPED, Phase.FAILED}),
        DesiredState.RUNNING,
        Phase.STARTING,
        "Starting",
    ),
    "stop": ActionRule(
        "vm.operate",
        frozenset({Phase.RUNNING, Phase.PAUSED}),
        DesiredState.STOPPED,
        Phase.STOPPING,
        "Stopping",
    ),
    "force-stop": ActionRule(
        "vm.operate",
        frozenset(
            {
                Phase.RUNNING,
                Phase.PAUSED,
                Phase.STOPPING,
                Phase.STARTING,
                Phase.FAILED,
                Phase.UNKNOWN,
            }
        ),
        DesiredState.STOPPED,
        Phase.STOPPING,
        "ForceStopping",
    ),
    "pause": ActionRule(
        "vm.operate", frozenset({Phase.RUNNING}), DesiredState.PAUSED, None, "Pausing"
    ),
    "resume": ActionRule(
        "vm.operate", frozenset({Phase.PAUSED}), DesiredState.RUNNING, None, "Resuming"
    ),
    "reboot": ActionRule("vm.operate", frozenset({Phase.RUNNING}), None, None, "Rebooting"),
    "delete": ActionRule(
        "vm.delete",
        frozenset(set(Phase.values) - {Phase.DELETING, Phase.MIGRATING}),
        DesiredState.DELETED,
        Phase.DELETING,
        "Deleting",
    ),
}


def allowed_actions(vm: VirtualMachine, role: str | None) -> list[str]:
    """The actions whose buttons a user with ``role`` sees for ``vm`` right now."""
    from tenants.permissions import role_allows

    return [
        name
        for name, rule in ACTIONS.items()
        if vm.phase in rule.phases and role_allows(role, rule.permission)
    ]


# --- Create ---------------------------------------------------------------------------
def visible_images(tenant: Tenant):
    return Image.objects.filter(Q(public=True) | Q(tenant=tenant), phase=ImagePhase.READY)


def name_error(name: str, *, max_length: int = 63, why: str | None = None) -> str | None:
    """What is wrong with ``name`` as the name of a VM (or of what names VMs after
    itself), before looking at what exists; None when it is fine."""
    if not name:
        return gettext("A name is required.")
    if len(name) > max_length or not NAME_RE.fullmatch(name):
        return gettext(
            "Use at most %(max)s lowercase letters, digits and hyphens, starting and "
            "ending with a letter or digit (%(why)s)."
        ) % {"max": max_length, "why": why or gettext("a DNS label")}
    if name in RESERVED_NAMES:
        return gettext("%(name)s is reserved; choose another name.") % {"name": repr(name)}
    return None


def _validate_name(
    tenant: Tenant, name: str, errors: dict[str, list[str]], *, taken: bool | None = None
) -> None:
    """``taken``: whether the tenant has a VM of that name, when the caller read it
    already (None: read here)."""
    if error := name_error(name):
        errors["name"] = [error]
    elif taken if taken is not None else _name_taken(tenant, name):
        errors["name"] = [
            gettext("A VM named %(name)s exists already in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        ]


def _name_taken_sql(tenant: Tenant, name: str) -> tuple[str, list]:
    """Whether the tenant has a VM named ``name``, as an SQL expression and its params
    (for a read that asks it on the way)."""
    table = VirtualMachine._meta.db_table  # a table name only; the values are params
    where = f"{table}.tenant_id = %s AND {table}.name = %s"
    return f"EXISTS (SELECT 1 FROM {table} WHERE {where})", [tenant.pk, name]  # noqa: S608


def _name_taken(tenant: Tenant, name: str) -> bool:
    return sql.exists(VirtualMachine, "tenant_id = %s AND name = %s", [tenant.pk, name])


def _validate_size(
    errors: dict[str, list[str]], *, image: Image | None, vcpus, memory_mib, disk_gib
) -> tuple[int, int, int]:
    """vCPUs, MiB and GiB as numbers within bounds and enough for ``image`` (when it is
    known); problems are added to ``errors``."""

    def number(field: str, value, low: int, high: int, unit: str) -> int:
        try:
            if isinstance(value, bool) or value is None or str(value).strip() == "":
                raise ValueError
            parsed = int(str(value).strip())
        except (TypeError, ValueError):
            errors[field] = [gettext("Enter a whole number.")]
            return 0
        if not low <= parsed <= high:
            errors[field] = [
                gettext("Must be between %(low)s and %(high)s %(unit)s.")
                % {"low": low, "high": high, "unit": unit}
            ]
        return parsed

    vcpus = number("vcpus", vcpus, 1, MAX_VCPUS, "vCPUs")
    memory_mib = number("memory_mib", memory_mib, 64, MAX_MEMORY_MIB, "MiB")
    disk_gib = number("disk_gib", disk_gib if disk_gib is not None else 0, 0, MAX_DISK_GIB, "GiB")
    if image is not None:
        _validate_size_for_image(errors, image=image, memory_mib=memory_mib, disk_gib=disk_gib)
    return vcpus, memory_mib, disk_gib


def _validate_size_for_image(
    errors: dict[str, list[str]], *, image: Image, memory_mib: int, disk_gib: int
) -> None:
    """What ``image`` needs of sizes read already (by ``_validate_size``)."""
    if "memory_mib" not in errors and memory_mib < image.min_memory_mib:
        errors["memory_mib"] = [
            gettext("%(image)s needs at least %(memory)s MiB.")
            % {"image": image, "memory": image.min_memory_mib}
        ]
    if image.kind == ImageKind.DISK and "disk_gib" not in errors:
        needed = max(1, -(-(image.virtual_size_bytes or 0) // 1024**3))
        if disk_gib < needed:
            errors["disk_gib"] = [
                gettext("%(image)s needs a disk of at least %(disk)s GiB.")
                % {"image": image, "disk": needed}
            ]


def create_request(*, vcpus: int, memory_mib: int, disk_gib: int, root_volume) -> dict:
    """What a VM create charges to its tenant's quota."""
    return {
        "cpu": vcpus,
        "memory": memory_mib,
        # The root disk's storage is charged on its volume, not on the VM; checked
        # together, so a refusal names every resource that does not fit.
        "storage": disk_gib if root_volume in (None, "") else 0,
        "vms": 1,
    }


def _validate_create(
    *,
    tenant: Tenant,
    name: str,
    image,
    vcpus,
    memory_mib,
    disk_gib,
    restart_policy: str,
    root_volume=None,
    ask_quota: bool = False,
) -> tuple[Image, int, int, int]:
    """The image and the sizes, or ``ValidationError`` naming every field that is wrong.

    An image given by name is read with the answers ``vm_create`` asks on the way
    (one statement instead of four): whether the name is taken (``name_taken``),
    whether the tenant has a network (``tenant_has_networks``) and, with ``ask_quota``,
    whether ``create_request`` fits the tenant's quota now (``quota_fits``, unlocked:
    the charge decides)."""
    errors: dict[str, list[str]] = {}
    name = name or ""
    image_obj = taken = None
    size_errors: dict[str, list[str]] = {}  # listed after the name's and the image's
    vcpus, memory_mib, disk_gib = _validate_size(
        size_errors, image=None, vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib
    )
    if isinstance(image, Image):
        image_obj = image if visible_images(tenant).filter(pk=image.pk).exists() else None
    elif image:
        # visible_images(tenant), the tenant's own before a public one of that name.
        asked = {"tenant_has_networks": network_services.tenant_has_networks_sql(tenant)}
        if not name_error(name):
            asked["name_taken"] = _name_taken_sql(tenant, name)
        if ask_quota and not size_errors:
            request = create_request(
                vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib, root_volume=root_volume
            )
            asked["quota_fits"] = quota_fits_sql(tenant, **request)
        image_obj = sql.first(
            Image,
            "(public = %s OR tenant_id = %s) AND phase = %s AND name = %s",
            [True, tenant.pk, ImagePhase.READY, str(image)],
            order_by="public",
            annotate=asked,
        )
        taken = bool(getattr(image_obj, "name_taken", False)) if image_obj else None
    _validate_name(tenant, name, errors, taken=taken)
    if image_obj is None:
        errors["image"] = [gettext("Choose one of the images available to this tenant.")]
    else:
        _validate_size_for_image(
            size_errors, image=image_obj, memory_mib=memory_mib, disk_gib=disk_gib
        )
    errors.update(size_errors)
    if restart_policy not in RestartPolicy.values:
        errors["restart_policy"] = [
            gettext("Choose one of %(codes)s.") % {"codes": ", ".join(RestartPolicy.values)}
        ]
    if errors:
        raise ValidationError(gettext("The virtual machine is not valid."), errors=errors)
    return image_obj, vcpus, memory_mib, disk_gib


def flavor_named(flavor: Flavor | str) -> Flavor:
    """The flavor ``flavor`` is or names; a field error on ``flavor`` when none has
    that name."""
    found = flavor if isinstance(flavor, Flavor) else Flavor.objects.filter(name=flavor).first()
    if found is None:
        raise ValidationError(
            gettext("Unknown flavor."), errors={"flavor": [gettext("Unknown flavor.")]}
        )
    return found


def vm_create(
    *,
    actor,
    tenant: Tenant,
    name: str,
    image,
    vcpus=None,
    memory_mib=None,
    disk_gib=None,
    flavor: Flavor | str | None = None,
    start: bool = True,
    restart_policy: str = RestartPolicy.ON_FAILURE,
    labels: dict | None = None,
    node_selector: dict | None = None,
    root_volume=None,
    networks: list | None = None,
    pool=None,
    pool_warm: bool = False,
) -> VirtualMachine:
    """Validate, reserve quota, place, save ``Pending`` and provision after commit.

    The tenant's first VM also gives it its ``default`` network (when it has none and
    its ``networks`` quota allows). ``networks`` names the tenant's networks the VM gets
    an interface on (``nic0``, ``nic1``, … in that order); without any it keeps one
    user-mode interface.

    The root disk (``disk_gib``, or the image's disk) becomes a volume deleted with the
    VM and charged on that volume; with ``root_volume`` (a Ready volume of the tenant)
    the VM boots from it instead, on the host that holds it, and it stays when the VM
    goes. ``pool`` (a VM pool's controller creating a member) makes the VM a member of
    that pool, made from its current template (``pool_warm``: one of its warm members,
    created with ``start`` False). Nothing is created and nothing is reserved when any
    step fails. A quota refusal is recorded as a Warning event for the tenant.
    """
    authorize(actor=actor, tenant=tenant, permission="vm.create", target=f"vm/{name}")
    if flavor is not None:
        flavor_obj = flavor_named(flavor)
        vcpus = vcpus or flavor_obj.vcpus
        memory_mib = memory_mib or flavor_obj.memory_mib
        disk_gib = disk_gib if disk_gib is not None else flavor_obj.disk_gib
    label_errors = {
        field: messages
        for field, value in (("labels", labels), ("node_selector", node_selector))
        if (messages := label_map_errors(value))
    }
    if label_errors:
        raise ValidationError(gettext("Invalid labels."), errors=label_errors)
    if root_volume not in (None, ""):
        from compute.models import Volume

        boot_name = root_volume.name if isinstance(root_volume, Volume) else str(root_volume)
        found = Volume.objects.filter(tenant=tenant, name=boot_name).first()
        if found is None:
            raise ValidationError(
                gettext("No volume named %(name)s in %(tenant)s.")
                % {"name": repr(boot_name), "tenant": tenant.slug},
                errors={"root_volume": [gettext("Choose one of the tenant's volumes.")]},
            )
        disk_gib = found.size_gib
        if image in (None, "") and found.source_image_id:
            image = found.source_image
    image_obj, vcpus, memory_mib, disk_gib = _validate_create(
        tenant=tenant,
        name=name,
        image=image,
        vcpus=vcpus,
        memory_mib=memory_mib,
        disk_gib=disk_gib,
        restart_policy=restart_policy,
        root_volume=root_volume,
        ask_quota=True,
    )
    request = create_request(
        vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib, root_volume=root_volume
    )
    # What the image read answered on the way, when this call read it (an Image passed
    # in may carry the answers of an older create's read: they are not trusted).
    by_name = not isinstance(image, Image)
    has_networks = getattr(image_obj, "tenant_has_networks", None) if by_name else None
    try:
        # Unlocked: a create that cannot fit does no work (the locked charge decides).
        # Asked with the image when it was read by name; read here when not, and to
        # name what does not fit.
        if not (by_name and getattr(image_obj, "quota_fits", False)):
            QuotaCharge(tenant).check(**request)
        # A deadlock ends the whole transaction only when this call began it: inside a
        # caller's (a pool's reconcile), its own locks stay, and it is theirs to retry.
        retry_deadlocks = not transaction.get_connection().in_atomic_block
        attempt, deadlocks = 1, 0
        while True:
            if attempt > PLACEMENT_ATTEMPTS:  # pragma: no cover
                raise AssertionError("the last attempt locks before it places")
            try:
                with transaction.atomic():
                    return _create_rows(
                        actor=actor,
                        tenant=tenant,
                        name=name,
                        image=image_obj,
                        vcpus=vcpus,
                        memory_mib=memory_mib,
                        disk_gib=disk_gib,
                        start=start,
                        restart_policy=restart_policy,
                        labels=labels,
                        node_selector=node_selector,
                        root_volume=root_volume,
                        networks=networks,
                        pool=pool,
                        pool_warm=pool_warm,
                        request=request,
                        locks_last=attempt < PLACEMENT_ATTEMPTS,
                        fresh=retry_deadlocks,
                        has_networks=None if has_networks is None else bool(has_networks),
                    )
            except HostTaken:
                attempt += 1  # the host filled up meanwhile: place again, from a fresh read
            except OperationalError as error:
                # PostgreSQL ended this transaction to break a deadlock, e.g. with a
                # create of the same name that wrote its VM and waits for the quota row
                # this one locked first (its last attempt): undone, so tried again, and
                # the other's outcome decides (the name taken: the 400 below).
                if not (retry_deadlocks and sql.deadlocked(error)) or deadlocks == DEADLOCK_RETRIES:
                    raise
                deadlocks += 1
    except IntegrityError:
        raise ValidationError(
            gettext("A VM with this name exists already."), errors={"name": [gettext("Taken.")]}
        ) from None
    except QuotaExceeded as error:
        event_publish(
            tenant=tenant,
            kind="vm",
            name=name,
            type="Warning",
            reason="QuotaExceeded",
            message=error.stored_message,
        )
        raise


# Attempts at placing a create from an unlocked read before the last one, which locks
# the quota row and then the host before it writes anything (as every create did).
PLACEMENT_ATTEMPTS = 3
# Times a create that PostgreSQL ended in a deadlock is tried again before the error is
# raised (a 500), when the create's transaction is its own: each try is a new
# transaction, holding nothing, in a new order of arrival.
DEADLOCK_RETRIES = 3


def _create_rows(
    *,
    actor,
    tenant: Tenant,
    name: str,
    image: Image,
    vcpus: int,
    memory_mib: int,
    disk_gib: int,
    start: bool,
    restart_policy: str,
    labels: dict | None,
    node_selector: dict | None,
    root_volume,
    networks: list | None,
    pool,
    pool_warm: bool,
    request: dict,
    locks_last: bool,
    has_networks: bool | None = None,
    fresh: bool = False,
) -> VirtualMachine:
    """``vm_create``'s rows, inside its transaction.

    With ``locks_last`` the host is chosen from an unlocked read and every row is
    written first; the tenant's quota row and then the host's are locked by the last
    statements (``QuotaCharge.charge``, ``scheduler.confirm``), so other creates in the
    tenant or on the host wait for those and the commit only, not for the whole
    create. ``HostTaken`` when the host filled up meanwhile (the caller tries again).
    Without it (the last attempt), both are locked before the VM is placed and held
    throughout, in the same order quota → host. ``has_networks``: whether the tenant
    had a network when the image was read (None: read here; the last attempt reads it
    again under the quota lock). ``fresh``: the transaction is the create's own (no VM
    of its own written before, for placement to count).
    """
    quota = QuotaCharge(tenant)
    boot = None
    elsewhere: tuple[int, ...] = ()
    if root_volume not in (None, ""):
        # Locked before the quota row, in the order a volume resize takes them.
        boot = volume_services.boot_volume(tenant, root_volume)
        elsewhere = tuple(Host.objects.exclude(pk=boot.host_id).values_list("pk", flat=True))
    if not locks_last:
        quota.lock(**request)
    network_services.network_default_ensure(
        actor=actor, tenant=tenant, has_networks=has_networks if locks_last else None
    )
    # A host where another tenant's overlapping network is active cannot run
    # this VM's networks too (one route per range on a host).
    clashing = network_services.hosts_with_overlap(tenant, list(networks or []))
    placement = schedule(
        vcpus=vcpus,
        memory_mib=memory_mib,
        node_selector=node_selector or {},
        exclude=(*elsewhere, *clashing),
        lock=not locks_last,
        fresh=fresh,
    )
    uid = uuid.uuid4()
    vm = VirtualMachine(
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
        restart_policy=restart_policy,
        labels=labels or {},
        node_selector=node_selector or {},
        pool=pool,
        pool_template=pool.template_generation if pool is not None else None,
        pool_warm=pool_warm,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    # The create's rows, written together (portal.sql.batch): the VM (when nothing below
    # needs its key at once), its reservation, usage subject and interval, audit entry
    # and event, in one statement before the quota's compare-and-set.
    with sql.batch():
        if networks or boot is not None or disk_gib:
            sql.insert(vm)  # its NICs and root volume refer to it by its key
        else:
            sql.insert_later(vm)
        quota.reserve(
            ref=f"vm:{uid}",
            kind=ReservationKind.VM,
            object_id=str(uid),
            name=name,
            labels=labels,
            cpu=vcpus,
            memory=memory_mib,
            vms=1,
        )
        if networks:
            nics = network_services.vm_nics_create(vm=vm, networks=list(networks))
        root = None
        if boot is not None:
            root = volume_services.boot_volume_take(actor=actor, volume=boot, vm=vm)
        elif disk_gib:
            root = volume_services.root_volume_create(
                actor=actor, vm=vm, size_gib=disk_gib, image=image, quota=quota
            )
        # A new VM's volumes are its root disk at most: what the response shows, not read.
        vm._prefetched_objects_cache = {"volumes": [root] if root is not None else []}
        audit_record(
            actor=actor,
            action="vm.create",
            tenant=tenant,
            target=f"vm/{name}",
            detail={
                "vcpus": vcpus,
                "memory_mib": memory_mib,
                "disk_gib": disk_gib,
                "image": image.name,
                "host": placement.host.name,
                **({"root_volume": boot.name} if boot is not None else {}),
                **({"networks": list(networks)} if networks else {}),
            },
        )
        event_publish(
            tenant=tenant,
            kind="vm",
            name=name,
            uid=str(uid),
            reason="Scheduled",
            message=vm_texts.ACCEPTED
            % {"vcpus": vcpus, "memory_mib": memory_mib, "image": image.name},
            new_object=True,
        )
        _publish(vm, services=False)  # Pending: it serves no Service yet
    # The locks, last and in the order quota → host (under them only the quota's
    # counters, the host's and the commit).
    quota.charge()
    if locks_last:
        confirm(vm, fresh=fresh)
    transaction.on_commit(lambda: dispatch.provision_request(vm.pk))
    if networks:  # after the create's live batch (see interfaces_changed)
        network_services.interfaces_changed(nic.network_id for nic in nics)
    return vm


# --- Actions --------------------------------------------------------------------------
def vm_action(*, actor, vm: VirtualMachine, action: str) -> VirtualMachine:
    """Ask for ``action`` (start, stop, force-stop, pause, resume, reboot, delete)."""
    rule = ACTIONS.get(action)
    if rule is None:
        raise ValidationError(
            gettext("Unknown action %(action)s.") % {"action": repr(action)},
            errors={"action": [gettext("Unknown.")]},
        )
    authorize(actor=actor, tenant=vm.tenant, permission=rule.permission, target=f"vm/{vm.name}")
    with transaction.atomic():
        vm = (
            VirtualMachine.objects.select_for_update(of=("self",))
            .select_related("tenant", "host")
            .get(pk=vm.pk)
        )
        if vm.phase not in rule.phases:
            raise Conflict(
                gettext("Cannot %(action)s %(vm)s while it is %(phase)s.")
                % {"action": action, "vm": vm.name, "phase": vm.phase},
                errors={
                    "phase": [
                        gettext("%(action)s is not possible in phase %(phase)s.")
                        % {"action": action, "phase": vm.phase}
                    ]
                },
            )
        restoring = Volume.objects.filter(vm=vm, phase=VolumePhase.RESTORING)
        if action == "start" and restoring.exists():
            # A restore holds this lock when it starts: the VM waits for its disks.
            names = ", ".join(restoring.values_list("name", flat=True))
            raise Conflict(
                gettext("Cannot start %(vm)s while a snapshot is restored onto %(names)s.")
                % {"vm": vm.name, "names": names},
                errors={"phase": [gettext("A volume is being restored.")]},
            )
        fields = ["updated", "resource_version"]
        if rule.desired or rule.phase:
            # A new intent: observations made against the old one no longer set the phase.
            vm.generation += 1
            fields.append("generation")
        if rule.desired:
            vm.desired_state = rule.desired
            fields.append("desired_state")
        if rule.phase:
            vm.phase = rule.phase
            vm.message = ""
            vm.phase_changed = timezone.now()
            fields += ["phase", "message", "phase_changed"]
            for key, value in ready_on_phase(vm, rule.phase, vm.phase_changed).items():
                setattr(vm, key, value)
                fields.append(key)
        vm.save(update_fields=fields)
        audit_record(actor=actor, action=f"vm.{action}", tenant=vm.tenant, target=f"vm/{vm.name}")
        event_publish(
            tenant=vm.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            reason=rule.verb,
            message=vm_texts.REQUESTED_BY[rule.verb] % {"actor": actor_name(actor)},
        )
        _publish(vm)
        task = {"reboot": "vm_reboot"}.get(action, "vm_apply")
        extra = {"force": True} if action == "force-stop" else {}
        transaction.on_commit(lambda: _enqueue(task, vm.pk, **extra))

    return vm


def vm_update(
    *,
    actor,
    vm: VirtualMachine,
    vcpus=None,
    memory_mib=None,
    desired_state: str | None = None,
    labels: dict | None = None,
) -> VirtualMachine:
    """Change the labels (:func:`vm_relabel`), the desired state, or resize a stopped VM
    (quota re-charged)."""
    authorize(actor=actor, tenant=vm.tenant, permission="vm.update", target=f"vm/{vm.name}")
    if labels is not None:
        vm = vm_relabel(actor=actor, vm=vm, labels=labels)
    if desired_state is not None:
        mapping = {
            DesiredState.RUNNING: "start" if vm.phase != Phase.PAUSED else "resume",
            DesiredState.STOPPED: "stop",
            DesiredState.PAUSED: "pause",
        }
        if desired_state not in mapping:
            raise ValidationError(
                gettext("Invalid desired state."),
                errors={"desired_state": [gettext("Choose running, stopped or paused.")]},
            )
        if vm.desired_state != desired_state:
            vm = vm_action(actor=actor, vm=vm, action=mapping[desired_state])
    if vcpus is None and memory_mib is None:
        return vm
    with transaction.atomic():
        vm = (
            VirtualMachine.objects.select_for_update(of=("self",))
            .select_related("tenant", "image", "host")
            .get(pk=vm.pk)
        )
        if vm.phase != Phase.STOPPED:
            raise Conflict(
                gettext("Stop the VM before resizing it."),
                errors={"phase": [gettext("Resize needs Stopped.")]},
            )
        errors: dict[str, list[str]] = {}
        new_vcpus, new_memory, _ = _validate_size(
            errors,
            image=vm.image,
            vcpus=vcpus if vcpus is not None else vm.vcpus,
            memory_mib=memory_mib if memory_mib is not None else vm.memory_mib,
            disk_gib=vm.disk_gib,
        )
        if errors:
            raise ValidationError(gettext("The new size is not valid."), errors=errors)
        old = (vm.vcpus, vm.memory_mib)
        if (new_vcpus, new_memory) == old:
            return vm
        # Lock order quota → host, the same as vm_create, so the two cannot deadlock.
        quota_release(vm.quota_ref)
        quota_reserve(
            tenant=vm.tenant,
            ref=vm.quota_ref,
            cpu=new_vcpus,
            memory=new_memory,
            vms=1,
            kind=ReservationKind.VM,
            object_id=str(vm.uid),
        )
        if vm.host is not None and (new_vcpus > vm.vcpus or new_memory > vm.memory_mib):
            # Growing: the VM's host must still pass the scheduler's filter.
            check_host(
                host=vm.host,
                vcpus=new_vcpus,
                memory_mib=new_memory,
                node_selector=vm.node_selector,
                resident=vm,
            )
        vm.vcpus, vm.memory_mib = new_vcpus, new_memory
        vm.generation += 1
        vm.save(update_fields=["vcpus", "memory_mib", "generation"])
        audit_record(
            actor=actor,
            action="vm.resize",
            tenant=vm.tenant,
            target=f"vm/{vm.name}",
            detail={"from": list(old), "to": [new_vcpus, new_memory]},
        )
        event_publish(
            tenant=vm.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            reason="Resized",
            message=vm_texts.RESIZED % {"vcpus": new_vcpus, "memory_mib": new_memory},
        )
        _publish(vm)
        transaction.on_commit(lambda: _enqueue("vm_redefine", vm.pk))
    return vm


def vm_relabel(
    *, actor, vm: VirtualMachine, labels, shown: Mapping[str, str] | None = None
) -> VirtualMachine:
    """Replace the VM's labels with ``labels`` (the whole map; ``{}`` removes them all),
    in any phase. Checked as at create: invalid labels change nothing. The Services that
    selected the VM before or select it now sync after the commit, so it leaves the ones
    it no longer matches and joins the ones it matches now. A pool member keeps the
    pool's own label (``isotope.dev/pool``), which no other value may replace.

    ``shown`` (a form's edit): the labels the caller's page showed, ``labels`` being
    their edited copy. Then only the keys added, changed or removed there are applied
    to the labels as they are now; a key someone changed since to another value
    refuses the whole edit (``Conflict``)."""
    from compute.models.pools import POOL_LABEL

    authorize(actor=actor, tenant=vm.tenant, permission="vm.update", target=f"vm/{vm.name}")
    errors = label_map_errors(labels) if labels is not None else [gettext("A map of strings.")]
    if errors:
        raise ValidationError(gettext("Invalid labels."), errors={"labels": errors})
    with transaction.atomic():
        vm = VirtualMachine.locked(vm.pk, "tenant", "host", "pool")
        if vm is None:
            raise NotFound(gettext("The VM is gone."))
        pool = vm.pool.name if vm.pool_id else None
        if shown is not None:
            labels = edits.labels_edit(vm.name, vm.labels or {}, shown, labels)
        if labels.get(POOL_LABEL, pool) != pool:
            raise ValidationError(
                gettext("Invalid labels."),
                errors={
                    "labels": [
                        gettext("%(label)s is set by the VM's pool only.") % {"label": POOL_LABEL}
                    ]
                },
            )
        labels = {**labels, POOL_LABEL: pool} if pool else dict(labels)
        before = dict(vm.labels or {})
        if before == labels:
            return vm
        vm.write_locked({"labels": labels})
        audit_record(
            actor=actor,
            action="vm.relabel",
            tenant=vm.tenant,
            target=f"vm/{vm.name}",
            detail={"from": before, "to": labels},
        )
        event_publish(
            tenant=vm.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            reason="Relabelled",
            message=labels_changed_message(labels, actor_name(actor)),
        )
        _publish(vm, labels_before=before)
    return vm


def vm_delete(*, actor, vm: VirtualMachine) -> VirtualMachine:
    return vm_action(actor=actor, vm=vm, action="delete")


# --- Observed state (tasks and reconciler) --------------------------------------------
def vm_observe(
    vm: VirtualMachine,
    phase: str,
    message: str = "",
    *,
    reason: str | None = None,
    event_type: str = "Normal",
    event_message: str | None = None,
    follow: str | None = None,
    booting: bool = False,
    boot_mark: int | None = None,
    ready=None,
    **fields,
) -> bool:
    """Record what an observer saw: ``phase`` and facts about the domain in ``fields``
    (``backend_id``, ``vnc_port``, ``host``). Emits an event when the phase or message
    changes and pushes the new state to live pages.

    ``vm`` is the observer's copy; its ``generation`` is the intent the observation was
    made against. The row is locked and compared: when a user's action made a newer
    generation since, the phase is *not* written (that action's own task records what
    comes of it) — the facts in ``fields`` still are. ``follow`` adopts a new desired
    state together with the phase (the reconciler following a change made outside the
    portal); it makes a new generation, and is likewise dropped when superseded.

    Two more facts can go in the same write, saving the separate writes a boot makes
    (a create's provisioning records them this way):

    - ``booting``: the guest's first boot begins now (``boot_mark``: where its console
      output begins), as :func:`~compute.services.readiness.vm_boot_begin` records it,
      written whether or not the observation is current (the boot happens either way);
    - ``ready``: the backend's readiness answer (a Ready one), known without probing the
      guest; recorded with a Running phase of the same boot, with its Ready event.

    Every write increments ``resource_version`` in the database. The copy receives the
    values written and its new version but keeps its generation, so the rest of the same
    observer's run is measured against the same intent. Returns whether the observation
    was current (False: superseded, or the VM is gone).
    """
    from compute.services.load_balancers import SERVING_PHASES

    message = message[:1000]
    with transaction.atomic():
        row = VirtualMachine.locked(vm.pk, "tenant")
        if row is None:
            return False
        served = row.phase in SERVING_PHASES  # before this write
        now = timezone.now()  # under the lock: after every earlier write's times
        current = observation_current(row, vm, phase)
        updates = {name: value for name, value in fields.items() if _differs(row, name, value)}
        changed = current and (row.phase != phase or row.message != message)
        if changed:
            updates.update(phase=phase, message=message, phase_changed=now)
            updates.update(ready_on_phase(row, phase, now))
            if "detail" not in fields and row.detail:
                # Staff's detail belongs to the message it explained.
                updates["detail"] = ""
        if booting:
            updates.update(boot_fields(row, mark=boot_mark, now=now))
        turns_ready = False
        if (
            ready is not None
            and ready.ready
            and current
            and phase == Phase.RUNNING
            and row.boot_log_offset == vm.boot_log_offset
        ):
            was = updates.get("ready", row.ready)  # as this write leaves it so far
            updates.update(ready_fields(ready, was=was, now=now))
            turns_ready = was != ConditionStatus.TRUE
        if current and follow is not None and follow != row.desired_state:
            # A new intent, decided by the observer: its later observations count.
            updates.update(desired_state=follow, generation=row.generation + 1)
        if current:  # the copy now shows the phase it observed, written or not
            vm.phase, vm.message = phase, message
        if not updates:
            return current
        row.write_locked(updates, copies=(vm,))
        if changed:
            event_publish(
                tenant=row.tenant,
                kind="vm",
                name=row.name,
                uid=str(row.uid),
                type=event_type,
                reason=reason or phase,
                message=event_message or message or common_texts.PHASE_IS_NOW % {"phase": phase},
            )
        if turns_ready:
            ready_event(row, ready)
        _publish(row, services=served or row.phase in SERVING_PHASES)
    return current


def _differs(row: VirtualMachine, name: str, value) -> bool:
    field = VirtualMachine._meta.get_field(name)
    if field.is_relation:
        return getattr(row, field.attname) != (value.pk if value is not None else None)
    return getattr(row, name) != value


def vm_fail(vm: VirtualMachine, message: str, *, detail: str = "") -> bool:
    """A permanent error: phase Failed with a plain message for the tenant (unless
    superseded); ``detail`` (the hypervisor's own words) is kept for platform staff only."""
    return vm_observe(
        vm, Phase.FAILED, message, reason="Failed", event_type="Warning", detail=detail[:4000]
    )


def vm_finalize_delete(vm: VirtualMachine, backend) -> None:
    """The domain is gone: its volumes go with it (their storage charge ends), then its
    quota is released (once) and the row dropped."""
    volume_services.vm_volumes_release(vm, backend)
    from compute.services.security_groups import vm_filters_release

    vm_filters_release(vm, backend)
    from compute.services.segments import networks_left, tunnelled

    # The networks this host may have extended for this VM alone (none untunnelled).
    networks = list(vm.nics.values_list("network_id", flat=True)) if tunnelled(vm.host) else []
    with transaction.atomic():
        released = quota_release(vm.quota_ref)
        network_services.vm_nics_forget(vm)  # its interfaces go with its row
        # Its row's delete takes its share off its host and, for a live migration still
        # holding a slot, off that target (the cascade sets the migration's VM to NULL):
        # both host rows locked first, in id order, as a migration's end locks them.
        lock_hosts(
            [
                vm.host_id,
                *Migration.objects.filter(vm_id=vm.pk, phase__in=SLOT_MIGRATION_PHASES).values_list(
                    "target_id", flat=True
                ),
            ]
        )
        VirtualMachine.objects.filter(pk=vm.pk).delete()
        event_publish(
            tenant=vm.tenant,
            kind="vm",
            name=vm.name,
            uid=str(vm.uid),
            reason="Deleted",
            message=vm_texts.DELETED_QUOTA_RELEASED if released else vm_texts.DELETED,
        )
        resource_forget(tenant=vm.tenant, kind="vm", name=vm.name)
        from compute.services.load_balancers import vm_changed
        from compute.services.pools import member_changed

        member_changed(vm)
        vm_changed(vm)
    networks_left(networks, vm.host)


def vm_state(vm: VirtualMachine) -> dict:
    """What live pages need to redraw a VM (phase badge, message, buttons by role)."""
    return {
        "phase": vm.phase,
        "message": vm.message,
        "phaseChanged": timestamp(vm.phase_changed),
        "conditions": [ready_condition(vm)],
        "desiredState": vm.desired_state,
        "labels": dict(vm.labels or {}),
        "uid": str(vm.uid),
        "resourceVersion": str(vm.resource_version),
        "actionsByRole": {
            role: allowed_actions(vm, role) for role in ("viewer", "operator", "admin")
        },
    }


def _publish(
    vm: VirtualMachine, *, labels_before: dict | None = None, services: bool = True
) -> None:
    """Push ``vm``'s state and tell its pool and Services. ``services`` False: the
    change cannot concern a Service (members are VMs in
    ``load_balancers.SERVING_PHASES``, and ``vm`` was in none before the change and is
    in none after it, like a create's Pending VM), so none is read."""
    from compute.services.load_balancers import vm_changed
    from compute.services.pools import member_changed

    resource_publish(tenant=vm.tenant, kind="vm", name=vm.name, data=vm_state(vm))
    member_changed(vm)  # a pool member's state is its pool's too
    # and a Service's member's, its Services' endpoints (those its old labels selected too)
    if services:
        vm_changed(vm, before=labels_before)


def _enqueue(task_name: str, vm_id: int, **kwargs) -> None:
    from compute.tasks import libvirt as tasks

    getattr(tasks, task_name).delay(vm_id, **kwargs)
