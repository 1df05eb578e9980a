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
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from compute.choices import (
    ConditionStatus,
    DesiredState,
    Phase,
    PoolPhase,
    PoolStrategy,
    RestartPolicy,
    WarmMode,
)
from compute.labels import label_map_errors
from compute.models import Image, VirtualMachine, VMPool
from compute.models.pools import MAX_POOL_NAME, MAX_REPLICAS, POOL_LABEL
from compute.services import edits
from compute.services import vms as vm_services
from compute.texts import pools as texts
from monitoring.formats import timestamp
from monitoring.services import event_publish, resource_forget, resource_publish
from portal.exceptions import ApplicationError, Conflict, QuotaExceeded, ValidationError
from tenants.models import Quota, Tenant
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


def _check_choice(value, choices, errors: dict[str, list[str]], field: str) -> None:
    if value not in choices.values:
        errors[field] = [
            gettext("Choose one of %(choices)s.") % {"choices": ", ".join(choices.values)}
        ]


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
    warm=0,
    max_unavailable=0,
    strategy: str = PoolStrategy.ROLLING,
    warm_mode: str = WarmMode.STOPPED,
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
    warm = _check_replicas(warm, errors, "warm")
    max_unavailable = _check_replicas(max_unavailable, errors, "max_unavailable")
    if restart_policy not in RestartPolicy.values:
        errors["restart_policy"] = [f"Choose one of {', '.join(RestartPolicy.values)}."]
    _check_choice(strategy, PoolStrategy, errors, "strategy")
    _check_choice(warm_mode, WarmMode, errors, "warm_mode")
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
                warm=warm,
                max_unavailable=max_unavailable,
                strategy=strategy,
                warm_mode=warm_mode,
                restart_policy=restart_policy,
                labels=labels or {},
                message=texts.WAITING,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                actor=actor,
                action="vmpool.create",
                tenant=tenant,
                target=f"vmpool/{name}",
                detail={
                    "replicas": replicas,
                    "warm": warm,
                    "warm_mode": warm_mode,
                    "strategy": strategy,
                    "vcpus": vcpus,
                    "memory_mib": memory_mib,
                    "disk_gib": disk_gib,
                    "image": image_obj.name,
                },
            )
            _event(
                pool,
                new_object=True,
                reason="Created",
                message=texts.CREATED
                % {
                    "replicas": replicas,
                    "vcpus": vcpus,
                    "memory_mib": memory_mib,
                    "image": image_obj.name,
                },
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
            message=(texts.SCALED_BECAUSE if reason else texts.SCALED)
            % {
                "before": before,
                "replicas": replicas,
                "actor": actor_name(actor),
                "reason": reason,
            },
        )
        _publish(pool)
        transaction.on_commit(lambda: pool_kick(pool.pk))
    return pool


# The template's fields: changing one rolls a new template out to the members.
TEMPLATE_FIELDS = ("image", "vcpus", "memory_mib", "disk_gib", "restart_policy")


def pool_update(
    *,
    actor,
    pool: VMPool,
    image=None,
    vcpus=None,
    memory_mib=None,
    disk_gib=None,
    restart_policy: str | None = None,
    max_unavailable=None,
    warm=None,
    paused: bool | None = None,
    strategy: str | None = None,
    warm_mode: str | None = None,
    expected: Mapping | None = None,
) -> VMPool:
    """Change the template (the members are replaced: a rolling update, one at a time by
    default, or recreate), the update strategy (``strategy``, ``max_unavailable``), the
    number of ``warm`` members and how they are kept (``warm_mode``), or pause/resume
    the update. Fields left None stay as they are.

    ``expected`` (a form's edit, ``compute.services.edits``): field → the value the
    caller's page showed. A field someone changed since to another value than this
    edit's refuses the whole update (``Conflict``, each such field named)."""
    authorize(
        actor=actor, tenant=pool.tenant, permission="vmpool.update", target=f"vmpool/{pool.name}"
    )
    with transaction.atomic():
        pool = VMPool.locked(pool.pk, "tenant", "image")
        if pool is None:
            raise Conflict("The VM pool is gone.")
        if pool.deleting:
            raise Conflict(
                f"{pool.name} is being deleted.", errors={"phase": ["The pool is Deleting."]}
            )
        errors: dict[str, list[str]] = {}
        image_obj = pool.image
        if isinstance(image, Image):
            visible = vm_services.visible_images(pool.tenant)
            image_obj = image if visible.filter(pk=image.pk).exists() else None
        elif image is not None:
            image_obj = (
                vm_services.visible_images(pool.tenant)
                .filter(name=str(image))
                .order_by("public")
                .first()
            )
        if image_obj is None:
            errors["image"] = ["Choose one of the images available to this tenant."]
        new_vcpus, new_memory, new_disk = vm_services._validate_size(
            errors,
            image=image_obj,
            vcpus=pool.vcpus if vcpus is None else vcpus,
            memory_mib=pool.memory_mib if memory_mib is None else memory_mib,
            disk_gib=pool.disk_gib if disk_gib is None else disk_gib,
        )
        policy = pool.restart_policy if restart_policy is None else restart_policy
        if policy not in RestartPolicy.values:
            errors["restart_policy"] = [f"Choose one of {', '.join(RestartPolicy.values)}."]
        unavailable = pool.max_unavailable
        if max_unavailable is not None:
            unavailable = _check_replicas(max_unavailable, errors, "max_unavailable")
        warm_count = pool.warm if warm is None else _check_replicas(warm, errors, "warm")
        new_strategy = pool.strategy if strategy is None else strategy
        _check_choice(new_strategy, PoolStrategy, errors, "strategy")
        new_warm_mode = pool.warm_mode if warm_mode is None else warm_mode
        _check_choice(new_warm_mode, WarmMode, errors, "warm_mode")
        if expected:
            wanted = {
                "image": image_obj,
                "vcpus": new_vcpus,
                "memory_mib": new_memory,
                "disk_gib": new_disk,
                "restart_policy": policy,
                "max_unavailable": unavailable,
                "strategy": new_strategy,
                "warm": warm_count,
                "warm_mode": new_warm_mode,
            }
            current = {field: getattr(pool, field) for field in wanted}
            edits.refuse_stale(pool.name, current, edits.stale_fields(current, expected, wanted))
        if errors:
            raise ValidationError("The VM pool is not valid.", errors=errors)
        template = {
            "image": image_obj,
            "vcpus": new_vcpus,
            "memory_mib": new_memory,
            "disk_gib": new_disk,
            "restart_policy": policy,
        }
        changes = {
            field: value for field, value in template.items() if getattr(pool, field) != value
        }
        settings_changes = {
            field: value
            for field, value in {
                "max_unavailable": unavailable,
                "strategy": new_strategy,
                "warm": warm_count,
                "warm_mode": new_warm_mode,
                "paused": pool.paused if paused is None else bool(paused),
            }.items()
            if getattr(pool, field) != value
        }
        if not changes and not settings_changes:
            return pool
        fields = {**changes, **settings_changes, "generation": pool.generation + 1}
        if changes:
            fields |= {
                "template_generation": pool.template_generation + 1,
                "rollout_failed": False,
                "rollout_message": "",
            }
        pool.write_locked(fields)
        detail = {
            key: (value.name if isinstance(value, Image) else value)
            for key, value in {**changes, **settings_changes}.items()
        }
        audit_record(
            actor=actor,
            action="vmpool.update",
            tenant=pool.tenant,
            target=f"vmpool/{pool.name}",
            detail=detail,
        )
        who = actor_name(actor)
        if "strategy" in settings_changes:
            _event(
                pool,
                reason="StrategyChanged",
                message=texts.STRATEGY_CHANGED % {"strategy": pool.strategy, "actor": who},
            )
        if changes:
            how = (
                texts.REPLACE_RECREATE
                if pool.strategy == PoolStrategy.RECREATE
                else texts.REPLACE_ROLLING % {"max_unavailable": pool.max_unavailable}
            )
            _event(
                pool,
                reason="TemplateChanged",
                message=texts.TEMPLATE_CHANGED
                % {
                    "template": pool.template_generation,
                    "actor": who,
                    "vcpus": pool.vcpus,
                    "memory_mib": pool.memory_mib,
                    "image": pool.image.name,
                    "how": how,
                },
            )
        if "warm" in settings_changes or "warm_mode" in settings_changes:
            _event(
                pool,
                reason="WarmChanged",
                message=texts.WARM_CHANGED
                % {"warm": pool.warm, "warm_mode": pool.warm_mode, "actor": who},
            )
        if "paused" in settings_changes:
            paused = ("UpdatePaused", texts.UPDATE_PAUSED)
            resumed = ("UpdateResumed", texts.UPDATE_RESUMED)
            reason, message = paused if pool.paused else resumed
            _event(pool, reason=reason, message=message % {"actor": who})
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
                "message": texts.DELETING_MEMBERS,
                "phase_changed": timezone.now(),
            }
        )
        audit_record(
            actor=actor, action="vmpool.delete", tenant=pool.tenant, target=f"vmpool/{pool.name}"
        )
        _event(
            pool,
            reason="Deleting",
            message=texts.DELETE_REQUESTED % {"actor": actor_name(actor)},
        )
        _publish(pool)
        transaction.on_commit(lambda: pool_kick(pool.pk))
    return pool


# --- The controller -------------------------------------------------------------------
def _live(members: list[VirtualMachine]) -> list[VirtualMachine]:
    """Members that count: not being deleted (warm ones included)."""
    return [
        vm
        for vm in members
        if vm.phase != Phase.DELETING and vm.desired_state != DesiredState.DELETED
    ]


def _active(members: list[VirtualMachine]) -> list[VirtualMachine]:
    """Live members that count towards the replicas (not warm)."""
    return [vm for vm in _live(members) if not vm.pool_warm]


def _current(pool: VMPool, vm: VirtualMachine) -> bool:
    """Made from the pool's template as it is now."""
    return vm.pool_template == pool.template_generation


def _available(vm: VirtualMachine) -> bool:
    return vm.phase == Phase.RUNNING and vm.ready == ConditionStatus.TRUE


def _members(pool: VMPool) -> list[VirtualMachine]:
    return list(VirtualMachine.objects.filter(pool=pool).select_related("tenant").order_by("pk"))


def quota_room(pool: VMPool) -> tuple[int, str]:
    """How many more members the tenant's quota holds, and what limits it."""
    quota = Quota.objects.get(tenant=pool.tenant)
    need = {
        "cpu": pool.vcpus,
        "memory": pool.memory_mib,
        "storage": pool.disk_gib,
        "vms": 1,
    }
    room, limiting = MAX_REPLICAS, ""
    for resource, amount in need.items():
        if not amount:
            continue
        fits = int((quota.limit(resource) - quota.used(resource)) // amount)
        if fits < room:
            room, limiting = max(fits, 0), resource
    return room, limiting


def _remove(pool: VMPool, vm: VirtualMachine, why: str) -> bool:
    """Delete one member (False when its phase does not allow it now, e.g. Migrating)."""
    if vm.phase not in vm_services.ACTIONS["delete"].phases:
        return False
    vm_services.vm_action(actor=controller_of(pool), vm=vm, action="delete")
    _event(
        pool,
        reason="SuccessfulDelete",
        message=texts.MEMBER_DELETED % {"vm": vm.name, "why": why},
    )
    return True


def _remove_first(
    pool: VMPool, ordered: list[VirtualMachine], count: int, why: str
) -> list[VirtualMachine]:
    """Delete up to ``count`` members, in the order given; the ones deleted."""
    removed: list[VirtualMachine] = []
    for vm in ordered:
        if len(removed) >= count:
            break
        if _remove(pool, vm, why):
            removed.append(vm)
    return removed


def _create(pool: VMPool, *, warm: bool = False) -> tuple[VirtualMachine | None, str]:
    """Create the next member (a warm one: defined and left stopped, or booted to be
    paused when the pool keeps its warm members paused); (None, why) when it is
    refused."""
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
                start=not warm or pool.warm_mode == WarmMode.PAUSED,
                pool_warm=warm,
            )
        except QuotaExceeded as error:
            return None, texts.QUOTA_REFUSED % {"reason": error.stored_message}
        except ValidationError as error:
            if set(error.errors) == {"name"}:
                # A VM of this name exists (made outside the pool): skip the number.
                pool.write_locked({"next_index": pool.next_index + 1})
                continue
            return None, error.message
        except ApplicationError as error:  # no host fits, ...
            return None, error.message
        pool.write_locked({"next_index": pool.next_index + 1})
        _event(
            pool,
            reason="SuccessfulCreate",
            message=(texts.WARM_CREATED if warm else texts.MEMBER_CREATED) % {"vm": vm.name},
        )
        return vm, ""
    return None, texts.NAMES_TAKEN % {"pool": pool.name}


def _warm_phase(pool: VMPool) -> str:
    """The phase a warm member waits in: Stopped or Paused (the pool's warm mode)."""
    return Phase.PAUSED if pool.warm_mode == WarmMode.PAUSED else Phase.STOPPED


# The order a scale-up takes warm members in: resumed, already running, booted.
WARM_PREFERENCE = (Phase.PAUSED, Phase.RUNNING, Phase.STOPPED)


def _usable_warm(pool: VMPool, vm: VirtualMachine) -> bool:
    """A warm member of the current template that a scale-up can put to work now:
    Paused (resumed), Stopped (started) or booted and not being paused (taken as is)."""
    if not vm.pool_warm or not _current(pool, vm):
        return False
    if vm.phase == Phase.RUNNING:
        return vm.desired_state == DesiredState.RUNNING
    return vm.phase in (Phase.PAUSED, Phase.STOPPED)


def _promote(pool: VMPool, vm: VirtualMachine) -> None:
    """Put a warm member to work: it becomes an ordinary member. A Paused one is
    resumed (its guest runs on where it stopped), a Stopped one started (a domain
    start, not a provisioning), a booted one only changes hands."""
    VirtualMachine.locked(vm.pk).write_locked({"pool_warm": False}, copies=(vm,))
    actor = controller_of(pool)
    if vm.phase == Phase.PAUSED:
        vm_services.vm_action(actor=actor, vm=vm, action="resume")
        _event(pool, reason="WarmResumed", message=texts.WARM_RESUMED % {"vm": vm.name})
    elif vm.phase == Phase.STOPPED:
        vm_services.vm_action(actor=actor, vm=vm, action="start")
        _event(pool, reason="WarmStarted", message=texts.WARM_STARTED % {"vm": vm.name})
    else:
        _event(pool, reason="WarmTaken", message=texts.WARM_TAKEN % {"vm": vm.name})


def _add(pool: VMPool, warm: list[VirtualMachine]) -> tuple[bool, str]:
    """Add one member of the current template: a warm one is put to work (Paused ones
    first), else a new one is created. (added, why not)."""
    usable = [vm for vm in warm if _usable_warm(pool, vm)]
    for vm in sorted(usable, key=lambda m: (WARM_PREFERENCE.index(m.phase), m.pk)):
        try:
            # A savepoint: a member its action refuses stays warm (not a member that
            # neither runs nor waits warm).
            with transaction.atomic():
                _promote(pool, vm)
        except Conflict:
            continue  # its phase changed under us (a worker's observation): the next one
        warm.remove(vm)
        return True, ""
    vm, why = _create(pool)
    if vm is None:
        _event(
            pool,
            type="Warning",
            reason="FailedCreate",
            message=texts.CANNOT_CREATE % {"vm": pool.member_name(pool.next_index), "reason": why},
        )
    return vm is not None, why


def _scale(pool: VMPool, active: list[VirtualMachine], warm: list[VirtualMachine]) -> str:
    """No rolling update under way: remove the newest members beyond ``replicas``, add
    the missing ones. Returns why adding stopped ("" when it did not)."""
    newest = sorted(active, key=lambda m: m.pk, reverse=True)
    surplus = len(active) - pool.replicas
    surplus -= len(
        _remove_first(pool, newest, surplus, texts.WHY_SCALED_DOWN % {"replicas": pool.replicas})
    )
    for _ in range(max(0, -surplus)):
        added, why = _add(pool, warm)
        if not added:
            return why
    return ""


def _roll(
    pool: VMPool, active: list[VirtualMachine], warm: list[VirtualMachine]
) -> tuple[str, str]:
    """One step of a rolling update (some active members are of an older template).

    At most ``replicas + 1`` members (the extra one when the quota has room for it,
    else ``maxUnavailable`` is at least 1) and at least ``replicas - maxUnavailable``
    available ones: an old member is deleted only when that keeps enough members
    available, and a new one is created while the pool is below its bound. Paused, or
    stopped by a failed new member, it only replaces what is missing.
    Returns (why adding stopped, how the update goes)."""
    old = [vm for vm in active if not _current(pool, vm)]
    new = [vm for vm in active if _current(pool, vm)]
    surge = 1 if len(active) > pool.replicas or quota_room(pool)[0] >= 1 else 0
    unavailable = pool.max_unavailable if surge else max(pool.max_unavailable, 1)
    notes = []
    if not surge and not pool.max_unavailable:
        notes.append(texts.NO_SURGE)
    # Too many members (scaled down during the update): old ones go first.
    extra = len(active) - (pool.replicas + surge)
    by_order = sorted(old, key=lambda m: (_available(m), m.pk)) + sorted(
        new, key=lambda m: m.pk, reverse=True
    )
    for vm in _remove_first(
        pool, by_order, extra, texts.WHY_SCALED_DOWN % {"replicas": pool.replicas}
    ):
        active.remove(vm)
        (old if vm in old else new).remove(vm)
    if pool.rollout_failed:
        notes.insert(0, pool.rollout_message or texts.A_MEMBER_FAILED)
    elif pool.paused:
        notes.insert(0, texts.UPDATE_IS_PAUSED)
    else:
        removable = sum(1 for vm in active if _available(vm)) - (pool.replicas - unavailable)
        oldest = sorted(old, key=lambda m: (_available(m), m.pk))
        why = texts.WHY_REPLACED
        for vm in _remove_first(pool, oldest, removable, why):
            active.remove(vm)
            old.remove(vm)
    bound = pool.replicas if (pool.paused or pool.rollout_failed) else pool.replicas + surge
    blocked = ""
    while len(active) < bound and len(new) < pool.replicas:
        deleting = VirtualMachine.objects.filter(pool=pool, phase=Phase.DELETING)
        if (
            quota_room(pool)[0] < 1
            and deleting.exists()
            and not any(_usable_warm(pool, vm) for vm in warm)
        ):
            break  # the replaced member's quota comes back when its VM is gone
        added, why = _add(pool, warm)
        if not added:
            blocked = why
            break
        active.append(None)  # counted; the run records what exists afterwards
        new.append(None)
    return blocked, " ".join(notes)


def _recreate(
    pool: VMPool, members: list[VirtualMachine], active: list[VirtualMachine], warm
) -> tuple[str, str, bool]:
    """One step of a recreate update: every member of an older template is deleted
    first, and the new ones are made only once those VMs are gone (their quota
    released), then as in a scale. Paused, it deletes nothing and only makes what is
    missing. Returns (why adding stopped, how the update goes, waiting for the old
    members to go)."""
    old = [vm for vm in active if not _current(pool, vm)]
    if pool.paused and old:
        return _scale(pool, active, warm), texts.UPDATE_IS_PAUSED, False
    removed = _remove_first(pool, sorted(old, key=lambda m: m.pk), len(old), texts.WHY_RECREATED)
    for vm in removed:
        active.remove(vm)
    going = sum(1 for vm in members if not _current(pool, vm) and vm not in old) + len(removed)
    left = len(old) - len(removed)
    if left or going:
        return (
            "",
            texts.RECREATE_WAITING % {"count": left + going},
            True,
        )
    return _scale(pool, active, warm), texts.RECREATE_MAKING, False


def _keep_warm(pool: VMPool, warm: list[VirtualMachine]) -> None:
    """Bring the warm members to the pool's warm mode. Paused: a Stopped one is booted
    and, once its guest is Ready, suspended. Stopped: a running or paused one is
    powered off (a warm member holds no state anyone waits for)."""
    actor = controller_of(pool)
    for vm in warm:
        if not _current(pool, vm):
            continue
        if pool.warm_mode == WarmMode.PAUSED:
            if vm.phase == Phase.STOPPED and vm.desired_state == DesiredState.STOPPED:
                action = "start"
            elif (
                vm.phase == Phase.RUNNING
                and vm.desired_state == DesiredState.RUNNING
                and vm.ready == ConditionStatus.TRUE
            ):
                action = "pause"
            else:
                continue
        elif vm.phase in (Phase.RUNNING, Phase.PAUSED) and vm.desired_state != DesiredState.STOPPED:
            action = "force-stop"
        else:
            continue
        try:
            vm_services.vm_action(actor=actor, vm=vm, action=action)
        except Conflict:
            continue  # its phase changed under us: the next run looks again
        if action == "pause":
            _event(pool, reason="WarmPaused", message=texts.WARM_PAUSED % {"vm": vm.name})


def _refill(pool: VMPool, warm: list[VirtualMachine]) -> str:
    """Keep ``warm`` warm members of the current template; why some are missing."""
    newest = sorted(warm, key=lambda m: m.pk, reverse=True)
    surplus = len(warm) - pool.warm
    surplus -= len(
        _remove_first(pool, newest, surplus, texts.WHY_WARM_WANTED % {"warm": pool.warm})
    )
    for _ in range(max(0, -surplus)):
        room, limiting = quota_room(pool)
        if room < 1:
            return texts.NO_QUOTA_FOR_WARM % {"quota_resource": limiting}
        vm, why = _create(pool, warm=True)
        if vm is None:
            return why
    return ""


def _fail_rollout(pool: VMPool, vm: VirtualMachine) -> None:
    message = texts.ROLLOUT_FAILED % {
        "vm": vm.name,
        "template": pool.template_generation,
        "reason": vm.message or texts.NO_REASON,
    }
    pool.write_locked({"rollout_failed": True, "rollout_message": message[:1000]})
    _event(pool, type="Warning", reason="RolloutFailed", message=message)


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
                _remove(pool, vm, texts.WHY_POOL_DELETING)
            if not members:
                _finalize_delete(pool)
                return None
            _record(pool, _members(pool), blocked="", announce=announce)
            return pool
        updating = any(not _current(pool, vm) for vm in _active(members))
        for vm in _live(members):
            if vm.phase != Phase.FAILED:
                continue
            if updating and not vm.pool_warm and _current(pool, vm):
                if not pool.rollout_failed:
                    _fail_rollout(pool, vm)
                continue  # kept for people to look at; the update waits
            if _remove(pool, vm, texts.WHY_FAILED % {"reason": vm.message}):
                _event(
                    pool,
                    type="Warning",
                    reason="MemberFailed",
                    message=texts.MEMBER_FAILED
                    % {"vm": vm.name, "reason": vm.message or texts.NO_REASON},
                )
        members = _members(pool)
        for vm in _live(members):
            if vm.pool_warm and not _current(pool, vm):
                _remove(pool, vm, texts.WHY_OLD_WARM)
        members = _members(pool)
        active = _active(members)
        warm = [vm for vm in _live(members) if vm.pool_warm]
        rollout, waiting = "", False
        stale = any(not _current(pool, vm) for vm in members)
        recreate = pool.strategy == PoolStrategy.RECREATE
        if recreate and stale:
            blocked, rollout, waiting = _recreate(pool, members, active, warm)
        elif any(not _current(pool, vm) for vm in active):
            blocked, rollout = _roll(pool, active, warm)
        else:
            blocked = _scale(pool, active, warm)
        _keep_warm(pool, warm)
        warm_note = "" if blocked or waiting else _refill(pool, warm)
        _record(
            pool,
            _members(pool),
            blocked=blocked,
            rollout=rollout,
            warm_note=warm_note,
            recreating=recreate and (stale or pool.phase == PoolPhase.UPDATING),
            announce=announce,
        )
        return pool


def _record(
    pool: VMPool,
    members: list[VirtualMachine],
    *,
    blocked: str,
    rollout: str = "",
    warm_note: str = "",
    recreating: bool = False,
    announce: bool = True,
) -> None:
    """Write the pool's counts, phase and message (only what changed). ``recreating``:
    a recreate update under way, which lasts until every wanted member of the new
    template is Running and Ready (its old members are gone long before)."""
    active = _active(members)
    running = [vm for vm in active if vm.phase == Phase.RUNNING]
    ready = [vm for vm in running if vm.ready == ConditionStatus.TRUE]
    updated = [vm for vm in ready if _current(pool, vm)]
    old = [vm for vm in active if not _current(pool, vm)]
    warm = [
        vm
        for vm in _live(members)
        if vm.pool_warm and vm.phase == _warm_phase(pool) and _current(pool, vm)
    ]
    # A member being resumed (a warm one put to work) is Paused until it is observed.
    stuck = [
        vm
        for vm in active
        if vm.phase in STUCK_PHASES
        and not (vm.phase == Phase.PAUSED and vm.desired_state == DesiredState.RUNNING)
    ]
    updating = bool(old) or (recreating and len(updated) < pool.replicas)
    finished = not updating and not pool.deleting and pool.phase == PoolPhase.UPDATING
    # The status message is one format per variant; the warm members' count is part of
    # the format where it can be read back apart from the rest.
    counts = {
        "updated": len(updated),
        "replicas": pool.replicas,
        "ready": len(ready),
        "warm": len(warm),
        "wanted": pool.warm,
        "note": warm_note,
    }
    with_warm = pool.warm and not pool.deleting
    warm_tail = ""  # the warm count of a variant with no format of its own
    if with_warm:
        warm_tail = f" {len(warm)} of {pool.warm} warm members." + (
            f" {warm_note}" if warm_note else ""
        )
    if pool.deleting:
        phase, message = PoolPhase.DELETING, texts.STATUS_DELETING % {"count": len(members)}
    elif blocked:
        phase = PoolPhase.DEGRADED
        message = texts.STATUS_BLOCKED % {
            "active": len(active),
            "replicas": pool.replicas,
            "blocked": blocked,
        }
        message += warm_tail
    elif old and pool.rollout_failed:
        phase = PoolPhase.DEGRADED
        message = texts.STATUS_UPDATED_NOTE % {**counts, "rollout": rollout} + warm_tail
    elif stuck:
        phase = PoolPhase.DEGRADED
        # Left as written: "%(vm)s is %(phase)s." would also read back (and garble) an
        # engine's own sentences, a phase placeholder matching any words.
        message = "; ".join(f"{vm.name} is {vm.phase}" for vm in stuck) + "." + warm_tail
    elif updating and rollout:
        phase = PoolPhase.UPDATING
        message = texts.STATUS_UPDATED_NOTE % {**counts, "rollout": rollout} + warm_tail
    elif updating:
        phase = PoolPhase.UPDATING
        message = _with_warm(texts.STATUS_UPDATED, with_warm, warm_note) % counts
    else:
        settled = len(active) == len(ready) == pool.replicas
        phase = PoolPhase.READY if settled else PoolPhase.SCALING
        message = _with_warm(texts.STATUS_READY, with_warm, warm_note) % counts
    updates = {
        "current_replicas": len(active),
        "available_replicas": len(running),
        "ready_replicas": len(ready),
        "updated_replicas": len(updated),
        "warm_replicas": len(warm),
        "phase": phase,
        "message": message[:1000],
        "observed_generation": pool.generation,
    }
    if not updating:
        updates |= {"rollout_failed": False, "rollout_message": ""}
    elif not pool.rollout_failed:
        updates["rollout_message"] = rollout[:1000]
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
    if finished:
        _event(
            pool,
            reason="UpdateComplete",
            message=texts.UPDATE_COMPLETE % {"template": pool.template_generation},
        )
    _publish(pool, members)


# A status format and its variants with the warm members counted.
WITH_WARM = {
    texts.STATUS_UPDATED: (texts.STATUS_UPDATED_WARM, texts.STATUS_UPDATED_WARM_NOTE),
    texts.STATUS_READY: (texts.STATUS_READY_WARM, texts.STATUS_READY_WARM_NOTE),
}


def _with_warm(status: str, with_warm: bool, note: str) -> str:
    if not with_warm:
        return status
    warm, warm_note = WITH_WARM[status]
    return warm_note if note else warm


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
        message=texts.DELETED,
    )
    resource_forget(tenant=pool.tenant, kind="vmpool", name=pool.name)


def _event(
    pool: VMPool, *, reason: str, message: str, type: str = "Normal", new_object: bool = False
) -> None:
    """``new_object``: its first event, in the transaction that makes it (see ``event_publish``)."""
    event_publish(
        new_object=new_object,
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
        "updatedReplicas": pool.updated_replicas,
        "warmReplicas": pool.warm_replicas,
        "warm": pool.warm,
        "templateGeneration": pool.template_generation,
        "maxUnavailable": pool.max_unavailable,
        "strategy": pool.strategy,
        "warmMode": pool.warm_mode,
        "paused": pool.paused,
        "rolloutFailed": pool.rollout_failed,
        "rolloutMessage": pool.rollout_message,
        "updating": pool.phase == PoolPhase.UPDATING
        or (pool.rollout_failed and pool.phase == PoolPhase.DEGRADED),
        "members": [
            {
                "name": vm.name,
                "phase": vm.phase,
                "ready": vm.ready == ConditionStatus.TRUE,
                "warm": vm.pool_warm,
                "template": vm.pool_template,
            }
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
