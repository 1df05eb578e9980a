"""VM pool services: create, scale and delete a pool, and the pool controller.

A pool is a template and a number of ``replicas``; its members are ordinary VMs that
:func:`pool_reconcile` (the controller) creates through ``vm_create`` and removes
through ``vm_action(delete)``, so quota, scheduling, provisioning, events and audit are
exactly those of single VMs. The controller runs after every change of the pool or of
a member (``pool_kick``, on commit) and from beat (``pools_sweep``); each run holds the
pool's row lock for its whole pass, so runs never interleave with each other or with a
user's scale or delete, and it is idempotent: a run with nothing to do writes nothing.

What a run does, in order: a pool being deleted deletes its members and, once they are
gone, itself; a Failed member is deleted and replaced; members beyond ``replicas`` are
removed newest first; missing members are created until the pool has ``replicas`` or a
creation is refused (quota, no host), which is recorded on the pool (phase
``Degraded``, ``message``, a Warning event) and tried again at the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from compute.choices import ConditionStatus, DesiredState, Phase, PoolPhase, RestartPolicy
from compute.labels import label_map_errors
from compute.models import Image, VirtualMachine, VMPool
from compute.models.pools import MAX_POOL_NAME, MAX_REPLICAS, POOL_LABEL
from compute.services import vms as vm_services
from monitoring.formats import timestamp
from monitoring.services import event_publish, resource_forget, resource_publish
from portal.exceptions import ApplicationError, Conflict, QuotaExceeded, ValidationError
from tenants.models import Tenant
from tenants.services import actor_name, audit_record, authorize

logger = logging.getLogger(__name__)

# Member phases that need a person (the pool cannot fix them by itself).
STUCK_PHASES = frozenset({Phase.STOPPED, Phase.PAUSED, Phase.UNKNOWN})
# How many taken names (a VM of that name made outside the pool) one run skips.
NAME_ATTEMPTS = 20


@dataclass(frozen=True)
class SystemActor:
    """The pool controller or an autoscaler acting on a pool: allowed everything
    (``is_system``), named in audit entries and event messages."""

    name: str
    is_system: bool = True
    is_authenticated: bool = False

    def __str__(self) -> str:
        return self.name


def controller_of(pool: VMPool) -> SystemActor:
    return SystemActor(f"vmpool/{pool.name}")


# --- Create, scale, delete ------------------------------------------------------------
def _check_replicas(value, errors: dict[str, list[str]], field: str = "replicas") -> int:
    try:
        if isinstance(value, bool) or value is None or str(value).strip() == "":
            raise ValueError
        replicas = int(str(value).strip())
    except (TypeError, ValueError):
        errors[field] = ["Enter a whole number."]
        return 0
    if not 0 <= replicas <= MAX_REPLICAS:
        errors[field] = [f"Must be between 0 and {MAX_REPLICAS}."]
    return replicas


def _check_name(tenant: Tenant, name: str, errors: dict[str, list[str]]) -> None:
    if error := vm_services.name_error(
        name, max_length=MAX_POOL_NAME, why=gettext("members are named <pool>-<n>")
    ):
        errors["name"] = [error]
    elif VMPool.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [f"A VM pool named {name!r} exists already in {tenant.slug}."]


def pool_create(
    *,
    actor,
    tenant: Tenant,
    name: str,
    image,
    vcpus=None,
    memory_mib=None,
    disk_gib=None,
    replicas=1,
    restart_policy: str = RestartPolicy.ON_FAILURE,
    labels: dict | None = None,
) -> VMPool:
    """Validate the template and save the pool; the controller creates its members
    after commit. Nothing is charged here: each member is charged when it is created,
    and a pool larger than the quota gets what fits (its status says why)."""
    authorize(actor=actor, tenant=tenant, permission="vmpool.create", target=f"vmpool/{name}")
    errors: dict[str, list[str]] = {}
    name = name or ""
    _check_name(tenant, name, errors)
    image_obj = None
    if isinstance(image, Image):
        visible = vm_services.visible_images(tenant)
        image_obj = image if visible.filter(pk=image.pk).exists() else None
    elif image:
        image_obj = (
            vm_services.visible_images(tenant).filter(name=str(image)).order_by("public").first()
        )
    if image_obj is None:
        errors["image"] = ["Choose one of the images available to this tenant."]
    vcpus, memory_mib, disk_gib = vm_services._validate_size(
        errors, image=image_obj, vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib
    )
    replicas = _check_replicas(replicas, errors)
    if restart_policy not in RestartPolicy.values:
        errors["restart_policy"] = [f"Choose one of {', '.join(RestartPolicy.values)}."]
    if label_errors := label_map_errors(labels):
        errors["labels"] = label_errors
    elif labels and POOL_LABEL in labels:
        errors["labels"] = [f"{POOL_LABEL} is set by the pool itself."]
    if errors:
        raise ValidationError(gettext("The VM pool is not valid."), errors=errors)
    try:
        with transaction.atomic():
            pool = VMPool.objects.create(
                tenant=tenant,
                name=name,
                image=image_obj,
                vcpus=vcpus,
                memory_mib=memory_mib,
                disk_gib=disk_gib,
                replicas=replicas,
                restart_policy=restart_policy,
                labels=labels or {},
                message="Waiting for the controller.",
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                actor=actor,
                action="vmpool.create",
                tenant=tenant,
                target=f"vmpool/{name}",
                detail={
                    "replicas": replicas,
                    "vcpus": vcpus,
                    "memory_mib": memory_mib,
                    "disk_gib": disk_gib,
                    "image": image_obj.name,
                },
            )
            _event(
                pool,
                reason="Created",
                message=f"Created with {replicas} replicas of {vcpus} vCPU, {memory_mib} MiB, "
                f"image {image_obj.name}.",
            )
            _publish(pool)
            transaction.on_commit(lambda: pool_kick(pool.pk))
    except IntegrityError:
        raise ValidationError(
            gettext("A VM pool with this name exists already."),
            errors={"name": [gettext("Taken.")]},
        ) from None
    return pool


def pool_scale(*, actor, pool: VMPool, replicas, reason: str = "") -> VMPool:
    """Set the number of members the pool should have (0 to ``MAX_REPLICAS``); the
    controller adds or removes members after commit. ``reason`` (an autoscaler's) goes
    into the event."""
    authorize(
        actor=actor, tenant=pool.tenant, permission="vmpool.scale", target=f"vmpool/{pool.name}"
    )
    errors: dict[str, list[str]] = {}
    replicas = _check_replicas(replicas, errors)
    if errors:
        raise ValidationError(gettext("The number of replicas is not valid."), errors=errors)
    with transaction.atomic():
        pool = VMPool.locked(pool.pk, "tenant")
        if pool is None:
            raise Conflict(gettext("The VM pool is gone."))
        if pool.deleting:
            raise Conflict(
                gettext("%(pool)s is being deleted.") % {"pool": pool.name},
                errors={"phase": [gettext("The pool is Deleting.")]},
            )
        if pool.replicas == replicas:
            return pool
        before = pool.replicas
        pool.write_locked({"replicas": replicas, "generation": pool.generation + 1})
        audit_record(
            actor=actor,
            action="vmpool.scale",
            tenant=pool.tenant,
            target=f"vmpool/{pool.name}",
            detail={"from": before, "to": replicas, **({"reason": reason} if reason else {})},
        )
        _event(
            pool,
            reason="Scaled",
            message=f"Scaled from {before} to {replicas} by {actor_name(actor)}"
            + (f": {reason}" if reason else "."),
        )
        _publish(pool)
        transaction.on_commit(lambda: pool_kick(pool.pk))
    return pool


def pool_delete(*, actor, pool: VMPool) -> VMPool:
    """Delete the pool: the controller deletes every member, then the pool (and its
    autoscaler). Each member's quota is released when its VM is gone."""
    authorize(
        actor=actor, tenant=pool.tenant, permission="vmpool.delete", target=f"vmpool/{pool.name}"
    )
    with transaction.atomic():
        pool = VMPool.locked(pool.pk, "tenant")
        if pool is None:
            raise Conflict(gettext("The VM pool is gone."))
        if pool.deleting:
            return pool
        pool.write_locked(
            {
                "deleting": True,
                "generation": pool.generation + 1,
                "phase": PoolPhase.DELETING,
                "message": "Deleting its members.",
                "phase_changed": timezone.now(),
            }
        )
        audit_record(
            actor=actor, action="vmpool.delete", tenant=pool.tenant, target=f"vmpool/{pool.name}"
        )
        _event(
            pool,
            reason="Deleting",
            message=f"Delete requested by {actor_name(actor)}.",
        )
        _publish(pool)
        transaction.on_commit(lambda: pool_kick(pool.pk))
    return pool


# --- The controller -------------------------------------------------------------------
def _live(members: list[VirtualMachine]) -> list[VirtualMachine]:
    """Members that count towards the replicas: not being deleted."""
    return [
        vm
        for vm in members
        if vm.phase != Phase.DELETING and vm.desired_state != DesiredState.DELETED
    ]


def _members(pool: VMPool) -> list[VirtualMachine]:
    return list(VirtualMachine.objects.filter(pool=pool).select_related("tenant").order_by("pk"))


def _remove(pool: VMPool, vm: VirtualMachine, why: str) -> bool:
    """Delete one member (False when its phase does not allow it now, e.g. Migrating)."""
    if vm.phase not in vm_services.ACTIONS["delete"].phases:
        return False
    vm_services.vm_action(actor=controller_of(pool), vm=vm, action="delete")
    _event(
        pool,
        reason="SuccessfulDelete",
        message=f"Deleted member {vm.name}: {why}.",
    )
    return True


def _create(pool: VMPool) -> tuple[VirtualMachine | None, str]:
    """Create the next member; (None, why) when it is refused."""
    labels = {**pool.labels, POOL_LABEL: pool.name}
    for _ in range(NAME_ATTEMPTS):
        name = pool.member_name(pool.next_index)
        try:
            vm = vm_services.vm_create(
                actor=controller_of(pool),
                tenant=pool.tenant,
                name=name,
                image=pool.image,
                vcpus=pool.vcpus,
                memory_mib=pool.memory_mib,
                disk_gib=pool.disk_gib,
                restart_policy=pool.restart_policy,
                labels=labels,
                pool=pool,
            )
        except QuotaExceeded as error:
            return None, f"Quota: {error.message}"
        except ValidationError as error:
            if set(error.errors) == {"name"}:
                # A VM of this name exists (made outside the pool): skip the number.
                pool.write_locked({"next_index": pool.next_index + 1})
                continue
            return None, error.message
        except ApplicationError as error:  # no host fits, ...
            return None, error.message
        pool.write_locked({"next_index": pool.next_index + 1})
        return vm, ""
    return None, f"The names {pool.name}-<n> are taken by other VMs."


def pool_reconcile(pool_id: int, *, announce: bool = True) -> VMPool | None:
    """Converge one pool's members to its spec and record its status (the controller).
    Returns the pool, or None when it is gone (deleted, or never existed).

    The pool's state goes to live pages when its status changed, or with ``announce``
    (a run after a change: a member's phase may be new even when no count is); the
    periodic sweep's runs pass False, so an idle pool is not pushed every interval."""
    with transaction.atomic():
        pool = VMPool.locked(pool_id, "tenant", "image")
        if pool is None:
            return None
        members = _members(pool)
        if pool.deleting:
            for vm in _live(members):
                _remove(pool, vm, "the pool is being deleted")
            if not members:
                _finalize_delete(pool)
                return None
            _record(pool, _members(pool), blocked="", announce=announce)
            return pool
        for vm in _live(members):
            if vm.phase == Phase.FAILED and _remove(pool, vm, f"it failed ({vm.message})"):
                _event(
                    pool,
                    type="Warning",
                    reason="MemberFailed",
                    message=f"{vm.name} failed: {vm.message or 'no reason given'}; replacing it.",
                )
        live = _live(_members(pool))
        blocked = ""
        surplus = len(live) - pool.replicas
        if surplus > 0:
            for vm in sorted(live, key=lambda m: m.pk, reverse=True):
                if surplus == 0:
                    break
                if _remove(pool, vm, f"scaled down to {pool.replicas}"):
                    surplus -= 1
        for _ in range(max(0, -surplus)):
            vm, blocked = _create(pool)
            if vm is None:
                _event(
                    pool,
                    type="Warning",
                    reason="FailedCreate",
                    message=f"Cannot create {pool.member_name(pool.next_index)}: {blocked}",
                )
                break
            _event(
                pool,
                reason="SuccessfulCreate",
                message=f"Created member {vm.name}.",
            )
        _record(pool, _members(pool), blocked=blocked, announce=announce)
        return pool


def _record(
    pool: VMPool, members: list[VirtualMachine], *, blocked: str, announce: bool = True
) -> None:
    """Write the pool's counts, phase and message (only what changed)."""
    live = _live(members)
    running = [vm for vm in live if vm.phase == Phase.RUNNING]
    ready = [vm for vm in running if vm.ready == ConditionStatus.TRUE]
    stuck = [vm for vm in live if vm.phase in STUCK_PHASES]
    if pool.deleting:
        phase, message = PoolPhase.DELETING, f"Deleting {len(members)} members."
    elif blocked:
        phase = PoolPhase.DEGRADED
        message = f"{len(live)} of {pool.replicas} members. {blocked}"
    elif stuck:
        phase = PoolPhase.DEGRADED
        message = "; ".join(f"{vm.name} is {vm.phase}" for vm in stuck) + "."
    elif len(live) == len(ready) == pool.replicas:
        phase, message = PoolPhase.READY, f"{pool.replicas} of {pool.replicas} members ready."
    else:
        phase = PoolPhase.SCALING
        message = f"{len(ready)} of {pool.replicas} members ready."
    updates = {
        "current_replicas": len(live),
        "available_replicas": len(running),
        "ready_replicas": len(ready),
        "phase": phase,
        "message": message[:1000],
        "observed_generation": pool.generation,
    }
    changed = {k: v for k, v in updates.items() if getattr(pool, k) != v}
    if not changed:
        if announce:
            _publish(pool, members)  # a member's phase may have changed, not the counts
        return
    if "phase" in changed:
        changed["phase_changed"] = timezone.now()
    pool.write_locked(changed)
    if "phase" in changed:
        _event(
            pool,
            type="Warning" if phase == PoolPhase.DEGRADED else "Normal",
            reason=phase,
            message=message,
        )
    _publish(pool, members)


def _finalize_delete(pool: VMPool) -> None:
    """Every member is gone: drop the pool (its autoscaler goes with it)."""
    from compute.models import Autoscaler

    autoscalers = list(Autoscaler.objects.filter(pool=pool).values_list("name", flat=True))
    VMPool.objects.filter(pk=pool.pk).delete()
    for name in autoscalers:
        resource_forget(tenant=pool.tenant, kind="autoscaler", name=name)
    _event(
        pool,
        reason="Deleted",
        message="Deleted with all its members.",
    )
    resource_forget(tenant=pool.tenant, kind="vmpool", name=pool.name)


def _event(pool: VMPool, *, reason: str, message: str, type: str = "Normal") -> None:
    event_publish(
        tenant=pool.tenant,
        kind="vmpool",
        name=pool.name,
        uid=str(pool.uid),
        type=type,
        reason=reason,
        message=message,
    )


# --- Live state and triggers ----------------------------------------------------------
def pool_state(pool: VMPool, members: list[VirtualMachine] | None = None) -> dict:
    """What live pages need to redraw a pool (counts, phase, members)."""
    if members is None:
        members = _members(pool)
    return {
        "phase": pool.phase,
        "message": pool.message,
        "phaseChanged": timestamp(pool.phase_changed),
        "uid": str(pool.uid),
        "resourceVersion": str(pool.resource_version),
        "replicas": pool.replicas,
        "currentReplicas": pool.current_replicas,
        "availableReplicas": pool.available_replicas,
        "readyReplicas": pool.ready_replicas,
        "members": [
            {"name": vm.name, "phase": vm.phase, "ready": vm.ready == ConditionStatus.TRUE}
            for vm in members
        ],
    }


def _publish(pool: VMPool, members: list[VirtualMachine] | None = None) -> None:
    resource_publish(
        tenant=pool.tenant, kind="vmpool", name=pool.name, data=pool_state(pool, members)
    )


def pool_kick(pool_id: int) -> None:
    """Run the controller for one pool soon (called on commit of a change)."""
    from compute.tasks import pools as tasks

    tasks.pool_reconcile_task.delay(pool_id)


def member_changed(vm: VirtualMachine) -> None:
    """A member's state changed: its pool's controller runs after commit."""
    if vm.pool_id is not None:
        pool_id = vm.pool_id
        transaction.on_commit(lambda: pool_kick(pool_id))
