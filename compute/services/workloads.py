"""Container workload services: create, scale, restart, delete, and observed status.

Each user action validates, charges the tenant's one quota (cpu = CPU request ×
replicas in cores, memory = memory request × replicas in MiB rounded up per pod,
pods = replicas) and records the desired state, an audit entry and an event in one
transaction, then enqueues ``compute.tasks.kubernetes.workload_apply`` on commit.
What the cluster does arrives from the watch (``manage.py watch_kubernetes``) through
the ``workload_seen_*`` functions. Phases follow SPEC's pod column: Pending, Running,
Failed, Deleting, Unknown.

Who writes ``phase``: :func:`workload_create` writes ``Pending``; the actions write the
phase the portal shows while their change is applied (``Pending`` after a scale of a
running Deployment or a restart, ``Deleting``) together with the spec change; every
other phase is observed and written by :func:`workload_observe` (from the watch, the
``workload_apply`` task and the unreachable-cluster monitor). Nothing else writes it.

Concurrency: every write locks the workload's row and increments ``resource_version``
in the database. A spec change also increments ``generation``, which the applied
objects carry (annotation ``isotope.dev/generation``): the watch locks the row before
it derives a phase, and a Deployment applied from an older generation shows
``Pending``. A task's observation made against an older generation does not write the
phase, and a quota refusal only concerns (and releases) the generation it refused.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from compute.backends.containers import (
    ClusterEvent,
    DeploymentInfo,
    PodInfo,
    VolumeMount,
    WorkloadSpec,
)
from compute.choices import Phase, ServiceType, WorkloadKind
from compute.labels import label_map_errors, labels_changed_message
from compute.models import KubernetesCluster, TenantNamespace, Workload
from compute.quantities import check_image, format_cpu, format_memory, parse_cpu, parse_memory
from compute.services import edits
from compute.services.readiness import workload_ready_condition
from compute.texts import common as common_texts
from compute.texts import workloads as texts
from monitoring.formats import timestamp
from monitoring.services import event_publish, resource_forget, resource_publish
from portal.exceptions import Conflict, QuotaExceeded, ValidationError
from portal.models import observation_current
from tenants.choices import ReservationKind
from tenants.models import Tenant
from tenants.services import actor_name, audit_record, authorize, quota_release, quota_reserve

logger = logging.getLogger(__name__)

# DNS-1035 label: a Service may carry the workload's name, so it starts with a letter.
NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# A Deployment's pods are named <name>-<pod-template-hash (≤ 10)>-<5 random>; 46 keeps
# them within 63 characters (longer names get truncated by Kubernetes).
MAX_NAME = {WorkloadKind.DEPLOYMENT: 46, WorkloadKind.POD: 63}
RESERVED_NAMES = frozenset({"new"})
MAX_REPLICAS = 100
MAX_PORTS = 10
MAX_ARGS = 50
# Matched with fullmatch (as every name here): "$" would accept a trailing newline.
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
MIB = 2**20
EVENT_KIND = "workload"


@dataclass(frozen=True)
class ActionRule:
    permission: str
    phases: frozenset[str]
    kinds: frozenset[str]


_LIVE = frozenset({Phase.PENDING, Phase.RUNNING, Phase.FAILED, Phase.UNKNOWN})
ACTIONS: dict[str, ActionRule] = {
    "scale": ActionRule("workload.operate", _LIVE, frozenset({WorkloadKind.DEPLOYMENT})),
    "restart": ActionRule(
        "workload.operate",
        frozenset({Phase.PENDING, Phase.RUNNING, Phase.FAILED}),
        frozenset({WorkloadKind.DEPLOYMENT}),
    ),
    "delete": ActionRule("workload.delete", _LIVE, frozenset(WorkloadKind.values)),
}


def allowed_actions(
    workload: Workload, role: str | None, *, sized: bool | None = None
) -> list[str]:
    """The actions whose buttons a user with ``role`` sees for ``workload`` right now:
    no scale while its autoscaler sizes it (``sized``: :func:`sized_by_autoscaler`,
    looked up when not given)."""
    from tenants.permissions import role_allows

    if sized is None:
        sized = sized_by_autoscaler(workload)
    return [
        name
        for name, rule in ACTIONS.items()
        if workload.phase in rule.phases
        and workload.kind in rule.kinds
        and not workload.deleting
        and role_allows(role, rule.permission)
        and not (name == "scale" and sized)
    ]


def sized_by_autoscaler(workload: Workload) -> bool:
    """Whether an autoscaler sizes the Deployment now, so that a scale by hand is
    refused: it has one, and is not at zero (scaled to zero by a minimum of 0), where
    its HPA does not act and, as a VM pool at zero, a scale by hand wakes it."""
    autoscaled = workload.kind == WorkloadKind.DEPLOYMENT and has_autoscaler(workload)
    return sized_by(autoscaled, workload.replicas)


def has_autoscaler(workload: Workload) -> bool:
    """Whether an autoscaler targets ``workload``: as its list read it
    (``selectors.with_has_autoscaler``), else one read."""
    known = getattr(workload, "has_autoscaler", None)
    return autoscaler_of(workload) is not None if known is None else known


def sized_by(autoscaled: bool, replicas: int) -> bool:
    """The rule of :func:`sized_by_autoscaler`, given whether the Deployment has an
    autoscaler and its replicas."""
    return autoscaled and replicas != 0


# --- Validation -----------------------------------------------------------------------
@dataclass(frozen=True)
class CleanSpec:
    name: str
    kind: str
    image: str
    replicas: int
    cpu_request_m: int
    cpu_limit_m: int
    memory_request: int
    memory_limit: int
    command: list[str]
    args: list[str]
    env: dict[str, str]
    ports: list[int]
    service_type: str
    volumes: list[dict] = ()


def _strings(value, field: str, errors: dict) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        errors[field] = ["A list of strings."]
        return []
    if len(value) > MAX_ARGS or any(len(v) > 1024 for v in value):
        errors[field] = [f"At most {MAX_ARGS} items of at most 1024 characters."]
    return list(value)


def validate_workload(
    *,
    tenant: Tenant,
    name,
    kind,
    image,
    replicas,
    cpu_request,
    cpu_limit,
    memory_request,
    memory_limit,
    command=None,
    args=None,
    env=None,
    ports=None,
    service_type="",
    volumes=None,
) -> CleanSpec:
    """Check every field; raise one ``ValidationError`` naming all the bad ones."""
    errors: dict[str, list[str]] = {}
    name = str(name or "").strip()
    if kind not in WorkloadKind.values:
        errors["kind"] = [f"Choose one of {', '.join(WorkloadKind.values)}."]
        kind = WorkloadKind.DEPLOYMENT
    limit = MAX_NAME[kind]
    if not name:
        errors["name"] = [gettext("A name is required.")]
    elif len(name) > limit:
        errors["name"] = [
            f"At most {limit} characters for a {kind}"
            + (" (its pods add a suffix and must fit in 63)." if limit < 63 else ".")
        ]
    elif not NAME_RE.fullmatch(name):
        errors["name"] = [
            gettext(
                "Use lowercase letters, digits and hyphens, starting with a letter and ending "
                "with a letter or digit (a DNS label)."
            )
        ]
    elif name in RESERVED_NAMES:
        errors["name"] = [
            gettext("%(name)s is reserved; choose another name.") % {"name": repr(name)}
        ]
    elif Workload.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [
            gettext("A workload named %(name)s exists already in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        ]
    try:
        image = check_image(image)
    except ValueError as error:
        errors["image"] = [str(error)]
    try:
        if isinstance(replicas, bool) or replicas is None or str(replicas).strip() == "":
            raise ValueError
        replicas = int(str(replicas).strip())
    except (TypeError, ValueError):
        errors["replicas"] = [gettext("Enter a whole number.")]
        replicas = 1
    if "replicas" not in errors:
        if kind == WorkloadKind.POD and replicas != 1:
            errors["replicas"] = [gettext("A single pod has exactly one replica.")]
        elif not 0 <= replicas <= MAX_REPLICAS:
            errors["replicas"] = [gettext("Between 0 and %(max)s.") % {"max": MAX_REPLICAS}]

    def quantity(field: str, value, parse, fallback):
        if value is None or str(value).strip() == "":
            return fallback
        try:
            return parse(str(value))
        except ValueError as error:
            errors[field] = [str(error)]
            return None

    cpu_request_m = quantity("cpu_request", cpu_request, parse_cpu, None)
    if cpu_request is None or str(cpu_request).strip() == "":
        errors["cpu_request"] = [gettext("A CPU request is required, e.g. 250m.")]
    memory_request_b = quantity("memory_request", memory_request, parse_memory, None)
    if memory_request is None or str(memory_request).strip() == "":
        errors["memory_request"] = [gettext("A memory request is required, e.g. 128Mi.")]
    cpu_limit_m = quantity("cpu_limit", cpu_limit, parse_cpu, cpu_request_m)
    memory_limit_b = quantity("memory_limit", memory_limit, parse_memory, memory_request_b)
    if cpu_request_m and cpu_limit_m and cpu_limit_m < cpu_request_m:
        errors["cpu_limit"] = [gettext("The limit must be at least the request.")]
    if memory_request_b and memory_limit_b and memory_limit_b < memory_request_b:
        errors["memory_limit"] = [gettext("The limit must be at least the request.")]
    command = _strings(command, "command", errors)
    args = _strings(args, "args", errors)
    env = env or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        errors["env"] = ["A map of names to string values."]
        env = {}
    else:
        bad = [k for k in env if not ENV_NAME.fullmatch(k) or len(k) > 253]
        if bad:
            errors["env"] = [f"Invalid variable name {bad[0]!r}: letters, digits, - . _"]
        elif len(env) > 100 or any(len(v) > 4096 for v in env.values()):
            errors["env"] = ["At most 100 variables of at most 4096 characters."]
    clean_ports: list[int] = []
    if ports:
        if not isinstance(ports, list | tuple):
            errors["ports"] = ["A list of port numbers."]
        else:
            for port in ports:
                try:
                    number = int(port)
                    if isinstance(port, bool) or str(number) != str(port).strip():
                        raise ValueError
                except (TypeError, ValueError):
                    errors["ports"] = [f"{port!r} is not a port number."]
                    break
                if not 1 <= number <= 65535:
                    errors["ports"] = [f"{number} is not between 1 and 65535."]
                    break
                if number not in clean_ports:
                    clean_ports.append(number)
            if len(clean_ports) > MAX_PORTS:
                errors["ports"] = [f"At most {MAX_PORTS} ports."]
    service_type = service_type or ""
    if service_type not in ServiceType.values:
        errors["service_type"] = [gettext("Choose ClusterIP, NodePort or none.")]
    elif service_type and not clean_ports and "ports" not in errors:
        errors["ports"] = [gettext("A service needs at least one port.")]
    from compute.services.volumes import clean_mounts

    mounts = clean_mounts(tenant, volumes, errors)
    if errors:
        raise ValidationError(gettext("The workload is not valid."), errors=errors)
    return CleanSpec(
        name=name,
        kind=kind,
        image=image,
        replicas=replicas,
        cpu_request_m=cpu_request_m,
        cpu_limit_m=cpu_limit_m,
        memory_request=memory_request_b,
        memory_limit=memory_limit_b,
        command=command,
        args=args,
        env=dict(env),
        ports=clean_ports,
        service_type=service_type,
        volumes=mounts,
    )


def charge(*, cpu_request_m: int, memory_request: int, replicas: int) -> dict:
    """What ``replicas`` pods cost the tenant's quota: cores (Decimal), MiB, pods."""
    return {
        "cpu": Decimal(cpu_request_m * replicas) / 1000,
        "memory": math.ceil(memory_request / MIB) * replicas,
        "pods": replicas,
    }


def default_cluster() -> KubernetesCluster | None:
    return KubernetesCluster.objects.filter(enabled=True).order_by("-default", "name").first()


# --- Create ---------------------------------------------------------------------------
def workload_create(
    *,
    actor,
    tenant: Tenant,
    name: str,
    image: str,
    kind: str = WorkloadKind.DEPLOYMENT,
    replicas=1,
    cpu_request="100m",
    cpu_limit=None,
    memory_request="128Mi",
    memory_limit=None,
    command=None,
    args=None,
    env=None,
    ports=None,
    service_type: str = "",
    labels: dict | None = None,
    cluster: KubernetesCluster | None = None,
    volumes: list | None = None,
    security_groups=None,
) -> Workload:
    """Validate, reserve quota, save ``Pending`` and create the objects after commit.

    Nothing is created and nothing is reserved when any step fails; a quota refusal is
    recorded as a Warning event for the tenant. ``security_groups`` names groups of the
    tenant its pods are in (none: the default group).
    """
    authorize(actor=actor, tenant=tenant, permission="workload.create", target=f"workload/{name}")
    if label_errors := label_map_errors(labels):
        raise ValidationError(gettext("Invalid labels."), errors={"labels": label_errors})
    groups = _groups(tenant, security_groups)
    spec = validate_workload(
        tenant=tenant,
        name=name,
        kind=kind,
        image=image,
        replicas=replicas,
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
        memory_request=memory_request,
        memory_limit=memory_limit,
        command=command,
        args=args,
        env=env,
        ports=ports,
        service_type=service_type,
        volumes=volumes,
    )
    cluster = cluster or default_cluster()
    if cluster is None:
        raise Conflict(
            gettext("No Kubernetes cluster is registered; ask a platform admin to add one."),
            errors={"cluster": [gettext("No cluster available.")]},
        )
    uid = uuid.uuid4()
    amounts = charge(
        cpu_request_m=spec.cpu_request_m,
        memory_request=spec.memory_request,
        replicas=spec.replicas,
    )
    try:
        with transaction.atomic():
            quota_reserve(
                tenant=tenant,
                ref=f"workload:{uid}",
                kind=ReservationKind.WORKLOAD,
                object_id=str(uid),
                name=spec.name,
                labels=labels,
                **amounts,
            )
            TenantNamespace.objects.get_or_create(
                tenant=tenant, cluster=cluster, defaults={"name": tenant.namespace}
            )
            workload = Workload.objects.create(
                uid=uid,
                tenant=tenant,
                cluster=cluster,
                name=spec.name,
                kind=spec.kind,
                image=spec.image,
                command=spec.command,
                args=spec.args,
                env=spec.env,
                ports=spec.ports,
                cpu_request_m=spec.cpu_request_m,
                cpu_limit_m=spec.cpu_limit_m,
                memory_request=spec.memory_request,
                memory_limit=spec.memory_limit,
                replicas=spec.replicas,
                service_type=spec.service_type,
                volumes=list(spec.volumes),
                labels=labels or {},
                phase=Phase.PENDING,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            if groups:
                workload.security_groups.set(groups)
            audit_record(
                actor=actor,
                action="workload.create",
                tenant=tenant,
                target=f"workload/{spec.name}",
                detail={
                    "kind": spec.kind,
                    "image": spec.image,
                    "replicas": spec.replicas,
                    "cpu_request": format_cpu(spec.cpu_request_m),
                    "memory_request": format_memory(spec.memory_request),
                    "cluster": cluster.name,
                    "security_groups": [g.name for g in groups],
                },
            )
            event_publish(
                tenant=tenant,
                kind=EVENT_KIND,
                name=spec.name,
                uid=str(uid),
                reason="Accepted",
                new_object=True,
                message=texts.ACCEPTED
                % {
                    "kind": spec.kind,
                    "replicas": spec.replicas,
                    "cpu": format_cpu(spec.cpu_request_m),
                    "memory": format_memory(spec.memory_request),
                    "image": spec.image,
                },
            )
            _publish(workload)
            transaction.on_commit(lambda: _enqueue(workload.pk))
    except IntegrityError:
        raise ValidationError(
            gettext("A workload with this name exists already."),
            errors={"name": [gettext("Taken.")]},
        ) from None
    except QuotaExceeded as error:
        event_publish(
            tenant=tenant,
            kind=EVENT_KIND,
            name=spec.name,
            type="Warning",
            reason="QuotaExceeded",
            message=error.stored_message,
        )
        raise
    return workload


# --- Actions --------------------------------------------------------------------------
def _locked(workload: Workload, action: str) -> Workload:
    workload = (
        Workload.objects.select_for_update(of=("self",))
        .select_related("tenant", "cluster")
        .get(pk=workload.pk)
    )
    rule = ACTIONS[action]
    if workload.deleting or workload.phase not in rule.phases:
        raise Conflict(
            gettext("Cannot %(action)s %(workload)s while it is %(phase)s.")
            % {"action": action, "workload": workload.name, "phase": workload.phase},
            errors={
                "phase": [
                    gettext("%(action)s is not possible in phase %(phase)s.")
                    % {"action": action, "phase": workload.phase}
                ]
            },
        )
    if workload.kind not in rule.kinds:
        raise Conflict(
            gettext("A single pod cannot %(action)s; use a Deployment.") % {"action": action},
            errors={"kind": [gettext("%(action)s needs a Deployment.") % {"action": action}]},
        )
    return workload


def _locked_alive(workload: Workload, refusal: str) -> Workload:
    """The workload's row locked, or ``Conflict`` (``refusal`` % its name) when it is
    being deleted: for changes allowed in any other phase."""
    workload = (
        Workload.objects.select_for_update(of=("self",))
        .select_related("tenant", "cluster")
        .get(pk=workload.pk)
    )
    if workload.deleting:
        raise Conflict(
            refusal % {"workload": workload.name},
            errors={"phase": [gettext("It is being deleted.")]},
        )
    return workload


def _record(workload: Workload, *, actor, action: str, reason: str, message, detail=None):
    """Inside a change's transaction: the audit row, the event on its timeline, the live
    state, and the task that applies the new generation after the commit."""
    audit_record(
        actor=actor,
        action=action,
        tenant=workload.tenant,
        target=f"workload/{workload.name}",
        detail=detail,
    )
    event_publish(
        tenant=workload.tenant,
        kind=EVENT_KIND,
        name=workload.name,
        uid=str(workload.uid),
        reason=reason,
        message=message,
    )
    _publish(workload)
    transaction.on_commit(lambda: _enqueue(workload.pk))


def workload_scale(*, actor, workload: Workload, replicas) -> Workload:
    """Change the number of replicas; the quota is re-checked for the new number (the
    old charge released and the new one reserved in one transaction)."""
    authorize(
        actor=actor,
        tenant=workload.tenant,
        permission="workload.operate",
        target=f"workload/{workload.name}",
    )
    try:
        if isinstance(replicas, bool) or replicas is None:
            raise ValueError
        replicas = int(str(replicas).strip())
    except (TypeError, ValueError):
        raise ValidationError(
            gettext("Enter a whole number."),
            errors={"replicas": [gettext("Enter a whole number.")]},
        ) from None
    if not 0 <= replicas <= MAX_REPLICAS:
        raise ValidationError(
            gettext("Replicas out of range."),
            errors={"replicas": [gettext("Between 0 and %(max)s.") % {"max": MAX_REPLICAS}]},
        )
    try:
        with transaction.atomic():
            workload = _locked(workload, "scale")
            autoscaler = autoscaler_of(workload)
            if autoscaler is not None:
                _check_wake(workload, autoscaler, replicas)
            old = workload.replicas
            if autoscaler is None:
                workload_recharge(workload, replicas)  # with one, the quota holds its max
            workload.replicas = replicas
            waiting = Phase.PENDING if workload.phase == Phase.RUNNING and replicas != old else None
            _change_spec(workload, ["replicas"], waiting)
            _record(
                workload,
                actor=actor,
                action="workload.scale",
                detail={"from": old, "to": replicas},
                reason="Scaling",
                message=texts.SCALE_REQUESTED
                % {"before": old, "replicas": replicas, "actor": actor_name(actor)},
            )
    except QuotaExceeded as error:
        event_publish(
            tenant=workload.tenant,
            kind=EVENT_KIND,
            name=workload.name,
            type="Warning",
            reason="QuotaExceeded",
            message=error.stored_message,
        )
        raise
    return workload


def _check_wake(workload: Workload, autoscaler, replicas: int) -> None:
    """An autoscaled Deployment is sized by its autoscaler (``Conflict``), except one at
    zero (its autoscaler's doing, with minimum 0): its HPA does not act at 0 and, as a
    VM pool at zero, it comes back when scaled by hand, to 1 up to the maximum."""
    if sized_by(True, workload.replicas):
        message = gettext(texts.SCALED_BY_AUTOSCALER) % {
            "workload": workload.name,
            "autoscaler": autoscaler.name,
        }
        raise Conflict(message, errors={"replicas": [message]})
    if not 1 <= replicas <= autoscaler.max_replicas:
        raise ValidationError(
            gettext("Replicas out of range."),
            errors={
                "replicas": [
                    gettext("Between 1 and %(max)s (the autoscaler's maximum).")
                    % {"max": autoscaler.max_replicas}
                ]
            },
        )


def workload_scale_to_zero(*, actor, workload: Workload, reason: str) -> None:
    """Inside the autoscaler's transaction, the workload's row locked (by
    :func:`workload_locked_for_autoscaler`): replicas 0, a new generation that the
    apply task writes (the Deployment at 0, where its HPA stops acting)."""
    old = workload.replicas
    workload.replicas = 0
    _change_spec(workload, ["replicas"], Phase.PENDING if workload.phase == Phase.RUNNING else None)
    _record(
        workload,
        actor=actor,
        action="workload.scale",
        detail={"from": old, "to": 0, "reason": reason},
        reason="Scaling",
        # Named as the autoscaler ("autoscaler/<name>"), not "the system".
        message=texts.SCALE_REQUESTED % {"before": old, "replicas": 0, "actor": str(actor)},
    )


def workload_locked_for_autoscaler(workload_id: int) -> Workload | None:
    """The Deployment's row locked (None when gone or being deleted)."""
    workload = (
        Workload.objects.select_for_update(of=("self",))
        .select_related("tenant", "cluster")
        .filter(pk=workload_id)
        .first()
    )
    return None if workload is None or workload.deleting else workload


def workload_recharge(workload: Workload, replicas: int) -> None:
    """Inside a transaction, the workload's row locked: its quota charge becomes that of
    ``replicas`` pods (the old one released, the new one reserved; ``QuotaExceeded``
    when the tenant's quota has no room, and the transaction rolls both back)."""
    quota_release(workload.quota_ref)
    quota_reserve(
        tenant=workload.tenant,
        ref=workload.quota_ref,
        kind=ReservationKind.WORKLOAD,
        object_id=str(workload.uid),
        **charge(
            cpu_request_m=workload.cpu_request_m,
            memory_request=workload.memory_request,
            replicas=replicas,
        ),
    )


def autoscaler_of(workload: Workload):
    """The autoscaler (a HorizontalPodAutoscaler) that sizes the Deployment, or None."""
    from compute.models import Autoscaler

    return Autoscaler.objects.filter(workload=workload).first()


def workload_restart(*, actor, workload: Workload) -> Workload:
    """Roll the Deployment's pods (a new ``restartedAt`` on its pod template)."""
    authorize(
        actor=actor,
        tenant=workload.tenant,
        permission="workload.operate",
        target=f"workload/{workload.name}",
    )
    with transaction.atomic():
        workload = _locked(workload, "restart")
        workload.restarted_at = timezone.now()
        _change_spec(workload, ["restarted_at"], Phase.PENDING)
        _record(
            workload,
            actor=actor,
            action="workload.restart",
            reason="Restarting",
            message=texts.RESTART_REQUESTED % {"actor": actor_name(actor)},
        )
    return workload


def workload_relabel(
    *, actor, workload: Workload, labels, shown: Mapping[str, str] | None = None
) -> Workload:
    """Replace the workload's labels with ``labels`` (the whole map; ``{}`` removes them
    all), checked as at create: invalid labels change nothing. A new generation: the task
    puts them on a Deployment's pod template (a rollout; the selector stays) or patches a
    bare pod's own labels. The Services that selected the workload before or select it now
    sync after the commit.

    ``shown`` (a form's edit): the labels the caller's page showed, ``labels`` being
    their edited copy. Then only the keys added, changed or removed there are applied
    to the labels as they are now; a key someone changed since to another value
    refuses the whole edit (``Conflict``)."""
    authorize(
        actor=actor,
        tenant=workload.tenant,
        permission="workload.update",
        target=f"workload/{workload.name}",
    )
    errors = label_map_errors(labels) if labels is not None else [gettext("A map of strings.")]
    if errors:
        raise ValidationError(gettext("Invalid labels."), errors={"labels": errors})
    with transaction.atomic():
        workload = _locked_alive(
            workload, gettext("Cannot change the labels of %(workload)s while it is deleted.")
        )
        before = dict(workload.labels or {})
        if shown is not None:
            labels = edits.labels_edit(workload.name, before, shown, labels)
        if before == labels:
            return workload
        workload.labels = dict(labels)
        rolls = workload.kind == WorkloadKind.DEPLOYMENT and workload.phase == Phase.RUNNING
        _change_spec(workload, ["labels"], Phase.PENDING if rolls else None)
        _record(
            workload,
            actor=actor,
            action="workload.relabel",
            detail={"from": before, "to": labels},
            reason="Relabelled",
            message=labels_changed_message(labels, actor_name(actor)),
        )
        from compute.services.load_balancers import workload_changed

        workload_changed(workload, before=before)
    return workload


def _groups(tenant: Tenant, names) -> list:
    """The tenant's security groups ``names`` names (``[]`` for none), or a
    ``ValidationError`` on ``security_groups`` naming the unknown ones. ``default`` is
    always known: the tenant's default group is made when the rest are valid."""
    from compute.services.security_groups import (
        DEFAULT_NAME,
        MAX_GROUPS_PER_NIC,
        default_group,
        resolve_groups,
    )

    wanted = list(names) if isinstance(names, list | tuple) else names
    with_default = isinstance(wanted, list) and DEFAULT_NAME in wanted
    if with_default:
        wanted = [name for name in wanted if name != DEFAULT_NAME]
    errors: dict[str, list[str]] = {}
    found = resolve_groups(tenant, wanted, errors, "security_groups")
    if errors:
        raise ValidationError(
            gettext("The workload's security groups are not valid."), errors=errors
        )
    if with_default:
        if len(found) >= MAX_GROUPS_PER_NIC:
            raise ValidationError(
                gettext("The workload's security groups are not valid."),
                errors={
                    "security_groups": [
                        gettext("At most %(max)s security groups.") % {"max": MAX_GROUPS_PER_NIC}
                    ]
                },
            )
        found.append(default_group(tenant))
    return found


def workload_groups(workload: Workload) -> list[str]:
    """The names of the security groups the workload's pods are in (the tenant's
    default group when it names none)."""
    from compute.backends.kubernetes.manifests import DEFAULT_GROUP

    return sorted(g.name for g in workload.security_groups.all()) or [DEFAULT_GROUP]


def workload_groups_set(*, actor, workload: Workload, groups) -> Workload:
    """Put the workload's pods in ``groups`` (names of the tenant's groups, at least one)
    instead of the ones they are in: a new generation whose task gives a Deployment's pod
    template the groups' labels (a rollout, as for labels) or patches a bare pod's. The
    groups' NetworkPolicies select pods by those labels, so they need no change. Nothing
    changes when a check fails."""
    authorize(
        actor=actor,
        tenant=workload.tenant,
        permission="workload.update",
        target=f"workload/{workload.name}",
    )
    found = _groups(workload.tenant, groups)
    if not found:
        raise ValidationError(
            gettext("The workload's security groups are not valid."),
            errors={"security_groups": [gettext("Choose at least one security group.")]},
        )
    with transaction.atomic():
        workload = _locked_alive(
            workload,
            gettext("Cannot change the security groups of %(workload)s while it is deleted."),
        )
        before = workload_groups(workload)
        names = sorted(g.name for g in found)
        if before == names:
            return workload
        workload.security_groups.set(found)
        rolls = workload.kind == WorkloadKind.DEPLOYMENT and workload.phase == Phase.RUNNING
        _change_spec(workload, [], Phase.PENDING if rolls else None)
        _record(
            workload,
            actor=actor,
            action="workload.update",
            detail={"security_groups": names, "before": before},
            reason="GroupsChanged",
            message=texts.GROUPS_CHANGED
            % {"actor": actor_name(actor), "groups": ", ".join(names), "before": ", ".join(before)},
        )
    return workload


def workload_delete(*, actor, workload: Workload) -> Workload:
    """Mark the workload Deleting; the task removes its objects, then the quota is
    released (once) and the row dropped by :func:`workload_finalize_delete`."""
    authorize(
        actor=actor,
        tenant=workload.tenant,
        permission="workload.delete",
        target=f"workload/{workload.name}",
    )
    with transaction.atomic():
        workload = _locked(workload, "delete")
        workload.deleting = True
        _change_spec(workload, ["deleting"], Phase.DELETING)
        _record(
            workload,
            actor=actor,
            action="workload.delete",
            reason="Deleting",
            message=texts.DELETION_REQUESTED % {"actor": actor_name(actor)},
        )
    return workload


def workload_action(*, actor, workload: Workload, action: str, **kwargs) -> Workload:
    """Dispatch one of :data:`ACTIONS` (views and the API call this)."""
    handlers = {"scale": workload_scale, "restart": workload_restart, "delete": workload_delete}
    if action not in handlers:
        raise ValidationError(
            gettext("Unknown action %(action)s.") % {"action": repr(action)},
            errors={"action": [gettext("Unknown.")]},
        )
    return handlers[action](actor=actor, workload=workload, **kwargs)


def _change_spec(workload: Workload, fields: list[str], phase: str | None) -> None:
    """Inside an action's transaction, with the row locked: save the changed ``fields``
    as a new generation, with the ``phase`` the portal shows while it is applied."""
    workload.generation += 1
    fields = [*fields, "generation"]
    if phase is not None:
        workload.phase, workload.message, workload.phase_changed = phase, "", timezone.now()
        fields += ["phase", "message", "phase_changed"]
    workload.save(update_fields=fields)


# --- Observed state (tasks and the watch) ---------------------------------------------
def workload_observe(
    workload: Workload,
    phase: str,
    message: str = "",
    *,
    reason: str | None = None,
    event_type: str = "Normal",
    event_message: str | None = None,
    **fields,
) -> bool:
    """Record an observed phase and facts (``ready_replicas``, ``available_replicas``,
    ``pods``). Emits an event when the phase or message changes, and pushes the state to
    live pages whenever anything changed.

    ``workload`` is the observer's copy; its ``generation`` is the spec the observation
    was made against. The row is locked and compared: after a newer spec change the
    phase is not written (the facts are). Every write increments ``resource_version``
    in the database; the copy receives the values written. Returns whether the
    observation was current.
    """
    with transaction.atomic():
        row = Workload.locked(workload.pk, "tenant", "cluster")
        if row is None:
            return False
        current = observation_current(row, workload, phase)
        if row.deleting and phase not in (Phase.DELETING, Phase.FAILED):
            phase, message = Phase.DELETING, ""
        message = message[:1000]
        updates = {k: v for k, v in fields.items() if getattr(row, k) != v}
        changed = current and (row.phase != phase or row.message != message)
        if changed:
            updates.update(phase=phase, message=message, phase_changed=timezone.now())
        if current:  # the copy now shows the phase it observed, written or not
            workload.phase, workload.message = phase, message
        if not updates:
            return current
        row.write_locked(updates, copies=(workload,))
        if changed:
            event_publish(
                tenant=row.tenant,
                kind=EVENT_KIND,
                name=row.name,
                uid=str(row.uid),
                type=event_type,
                reason=reason or phase,
                message=event_message or message or common_texts.PHASE_IS_NOW % {"phase": phase},
            )
        _publish(row)
    return current


def workload_refused(workload: Workload, message: str) -> bool:
    """The API server refused the spec of ``workload``'s generation (its quota): release
    the reservation and show Failed with the cluster's reason, recording the refusal
    against that generation. When the spec changed meanwhile (a scale re-charged the
    quota), the refusal concerns a spec that is no longer wanted: nothing is released
    and the newer spec's own apply runs. Returns whether the refusal was recorded."""
    with transaction.atomic():
        row = Workload.locked(workload.pk, "tenant", "cluster")
        if row is None or row.generation != workload.generation or row.deleting:
            logger.info("%s: refusal of generation %s is superseded", workload, workload.generation)
            return False
        quota_release(row.quota_ref)
        row.refused_generation = row.generation
        row.save(update_fields=["refused_generation"])
        workload.refused_generation = row.refused_generation
        return workload_observe(
            row,
            Phase.FAILED,
            texts.QUOTA_REFUSED % {"message": message},
            reason="QuotaRefused",
            event_type="Warning",
        )


def workload_fail(workload: Workload, message: str) -> bool:
    return workload_observe(workload, Phase.FAILED, message, reason="Failed", event_type="Warning")


def workload_finalize_delete(workload: Workload) -> None:
    """Everything is gone from the cluster: release quota (once) and drop the row."""
    with transaction.atomic():
        autoscaler = autoscaler_of(workload)  # goes with it (its HPA went first)
        deleted, _ = Workload.objects.filter(pk=workload.pk).delete()
        if not deleted:
            return
        if autoscaler is not None:
            from compute.services import autoscalers as autoscaler_services

            autoscaler_services.autoscaler_gone(autoscaler)
        released = quota_release(workload.quota_ref)
        event_publish(
            tenant=workload.tenant,
            kind=EVENT_KIND,
            name=workload.name,
            uid=str(workload.uid),
            reason="Deleted",
            message=texts.DELETED_RELEASED if released else texts.DELETED,
        )
        resource_forget(tenant=workload.tenant, kind=EVENT_KIND, name=workload.name)


def workload_spec(workload: Workload) -> WorkloadSpec:
    return WorkloadSpec(
        tenant=workload.tenant.slug,
        namespace=workload.namespace,
        name=workload.name,
        kind=workload.kind,
        image=workload.image,
        replicas=workload.replicas,
        cpu_request_m=workload.cpu_request_m,
        cpu_limit_m=workload.cpu_limit_m,
        memory_request=workload.memory_request,
        memory_limit=workload.memory_limit,
        command=list(workload.command),
        args=list(workload.args),
        env=dict(workload.env),
        ports=list(workload.ports),
        service_type=workload.service_type,
        mounts=mounts_of(workload),
        labels=dict(workload.labels or {}),
        security_groups=workload_groups(workload),
        autoscaled=has_autoscaler(workload),
        restarted_at=workload.restarted_at.isoformat() if workload.restarted_at else "",
        portal_uid=str(workload.uid),
        portal_generation=workload.generation,
    )


def mounts_of(workload: Workload) -> list[VolumeMount]:
    """The claims the workload's pods mount (a volume's claim is named like it)."""
    return [
        VolumeMount(claim=m["volume"], mount_path=m["mountPath"], read_only=bool(m.get("readOnly")))
        for m in workload.volumes or []
    ]


def deployment_phase(workload: Workload, info: DeploymentInfo) -> tuple[str, str]:
    """The phase and message a Deployment's status shows, given the desired spec: an
    object applied from an older generation of the spec is still ``Pending``."""
    if info.portal_generation and info.portal_generation < workload.generation:
        return Phase.PENDING, ""
    if info.failure:
        return Phase.FAILED, texts.CANNOT_CREATE_PODS % {"reason": info.failure}
    want = workload.replicas
    settled = (
        info.up_to_date
        and info.replicas == want
        and info.current == want
        and info.ready == want
        and info.available == want
        and info.updated == want
    )
    return (Phase.RUNNING, "") if settled else (Phase.PENDING, "")


def pod_phase(info: PodInfo) -> tuple[str, str]:
    if info.terminating:
        return Phase.PENDING, texts.POD_TERMINATING
    if info.phase == "Running" and info.ready:
        return Phase.RUNNING, ""
    if info.phase in ("Failed", "Succeeded"):
        ended = texts.POD_ENDED_BECAUSE if info.reason else texts.POD_ENDED
        return Phase.FAILED, ended % {"phase": info.phase, "reason": info.reason}
    return Phase.PENDING, info.reason


# --- Watch observations ---------------------------------------------------------------
def _by_namespace(
    cluster: KubernetesCluster, namespace: str, name: str, *, lock: bool = False
) -> Workload | None:
    """The workload ``name`` in ``namespace``; with ``lock`` its row is locked until the
    caller's transaction ends (the watch derives phases from the locked row)."""
    queryset = Workload.objects.select_related("tenant", "cluster").filter(
        cluster=cluster, tenant__slug=Tenant.slug_of_namespace(namespace), name=name
    )
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    return queryset.first()


def workload_seen_deployment(
    cluster: KubernetesCluster, info: DeploymentInfo, *, deleted: bool = False
) -> Workload | None:
    """The watch saw a Deployment change (or vanish). The phase is derived from the
    workload's locked row, so it always measures the newest spec."""
    with transaction.atomic():
        workload = _by_namespace(cluster, info.namespace, info.name, lock=True)
        if workload is None or workload.kind != WorkloadKind.DEPLOYMENT:
            return None
        if deleted or info.terminating:
            if workload.deleting:
                # finish: release quota once everything is gone
                transaction.on_commit(lambda: _enqueue(workload.pk))
            else:
                _vanished(workload, "Deployment")
            return workload
        sized = {}
        if (
            info.replicas != workload.replicas
            and not (info.portal_generation and info.portal_generation < workload.generation)
            and autoscaler_of(workload) is not None
        ):
            # Its HorizontalPodAutoscaler's decision: the workload shows that size (the
            # quota holds its maximum already) and a later apply keeps it. A Deployment
            # of an older generation has not seen the portal's own size change (scale to
            # zero and back) yet: that one is not a decision.
            workload.replicas = info.replicas
            sized["replicas"] = info.replicas
        phase, message = deployment_phase(workload, info)
        workload_observe(
            workload,
            phase,
            message,
            event_type="Warning" if phase == Phase.FAILED else "Normal",
            ready_replicas=info.ready,
            available_replicas=info.available,
            **sized,
        )
    return workload


def workload_seen_pod(
    cluster: KubernetesCluster, info: PodInfo, *, deleted: bool = False
) -> Workload | None:
    """The watch saw one of a workload's pods change (or vanish): update its pod list,
    and for a single-Pod workload its phase."""
    workload_name = info.workload or info.name
    with transaction.atomic():
        workload = _by_namespace(cluster, info.namespace, workload_name, lock=True)
        if workload is None and not info.workload:
            workload = _by_namespace(
                cluster, info.namespace, info.name.rsplit("-", 2)[0], lock=True
            )
        if workload is None:
            return None
        before = next((p for p in workload.pods if p.get("name") == info.name), None)
        pods = [p for p in workload.pods if p.get("name") != info.name]
        entry = None
        if not deleted:
            entry = {
                "name": info.name,
                "phase": "Terminating" if info.terminating else info.phase,
                "node": info.node,
                "restarts": info.restarts,
                "ready": info.ready,
                "reason": info.reason,
                "ip": info.ip,
            }
            pods.append(entry)
        pods.sort(key=lambda p: p["name"])
        if _serving(before) != _serving(entry):
            from compute.services.load_balancers import workload_changed

            workload_changed(workload)  # a Service's endpoints follow its pods
        if workload.kind != WorkloadKind.POD:
            workload_observe(workload, workload.phase, workload.message, pods=pods)
        elif deleted:
            if workload.deleting:
                transaction.on_commit(lambda: _enqueue(workload.pk))
                workload_observe(workload, Phase.DELETING, pods=pods)
            else:
                _vanished(workload, "Pod", pods=pods)
        else:
            phase, message = pod_phase(info)
            workload_observe(
                workload,
                phase,
                message,
                event_type="Warning" if phase == Phase.FAILED else "Normal",
                pods=pods,
                ready_replicas=int(info.ready),
                available_replicas=int(info.ready),
            )
    return workload


def _serving(pod: dict | None) -> tuple:
    """What of a pod a Service's endpoint shows (its address, phase and readiness)."""
    if pod is None:
        return ()
    return (pod.get("ip") or "", pod.get("phase"), bool(pod.get("ready")))


def _vanished(workload: Workload, what: str, **fields) -> None:
    """Deleted outside the portal: recreate it (the spec is the portal's)."""
    if workload_observe(
        workload,
        Phase.PENDING,
        "",
        reason="DeletedOutsidePortal",
        event_type="Warning",
        event_message=texts.DELETED_OUTSIDE % {"kind": what},
        **fields,
    ):
        transaction.on_commit(lambda: _enqueue(workload.pk))


_REASON_CLEAN = re.compile(r"[^A-Za-z0-9]")


def workload_seen_event(cluster: KubernetesCluster, event: ClusterEvent) -> None:
    """A Kubernetes Event about a workload's Deployment, ReplicaSet or pods (or its
    HorizontalPodAutoscaler): it joins the portal's timeline as an event of the workload
    (source ``kubernetes``)."""
    name = event.object_name
    if event.object_kind == "HorizontalPodAutoscaler":
        from compute.services import hpa

        autoscaler = hpa.autoscaler_seen_event(cluster, event)
        if autoscaler is None:
            return
        name = autoscaler.workload.name
    candidates = {
        "Deployment": [name],
        "ReplicaSet": [name.rsplit("-", 1)[0]],
        "Pod": [name, name.rsplit("-", 2)[0]],
        "Service": [name],
        "HorizontalPodAutoscaler": [name],
    }.get(event.object_kind)
    if not candidates:
        return
    workload = None
    for candidate in candidates:
        workload = _by_namespace(cluster, event.namespace, candidate)
        if workload is not None:
            break
    if workload is None:
        return
    reason = _REASON_CLEAN.sub("", event.reason)[:64] or "Event"
    if not reason[0].isupper():
        reason = reason[0].upper() + reason[1:]
    event_publish(
        tenant=workload.tenant,
        kind=EVENT_KIND,
        name=workload.name,
        uid=str(workload.uid),
        type="Warning" if event.type == "Warning" else "Normal",
        reason=reason,
        message=texts.EVENT_ABOUT[event.object_kind]
        % {"name": event.object_name, "message": event.message},
        source="kubernetes",
    )


def cluster_workloads_unknown(cluster: KubernetesCluster, detail: str) -> int:
    """The API server has been unreachable for a while: every live workload on it is
    Unknown (the watch relists and corrects them once it is back). A workload the
    cluster refused has nothing there to be unknown about and stays Failed."""
    count = 0
    candidates = (
        Workload.objects.filter(cluster=cluster, deleting=False)
        .exclude(phase=Phase.UNKNOWN)
        .exclude(refused_generation=F("generation"))
        .values_list("pk", flat=True)
    )
    for pk in list(candidates):
        with transaction.atomic():
            workload = Workload.locked(pk, "tenant", "cluster")
            if workload is None or workload.deleting or workload.phase == Phase.UNKNOWN:
                continue
            workload_observe(
                workload,
                Phase.UNKNOWN,
                texts.CLUSTER_UNREACHABLE % {"cluster": cluster.name, "phase": workload.phase},
                reason="ClusterUnreachable",
                event_type="Warning",
            )
            count += 1
    return count


# --- Live state -----------------------------------------------------------------------
def workload_state(workload: Workload) -> dict:
    """What live pages need to redraw a workload (phase, counts, pods, buttons by role)."""
    sized = sized_by_autoscaler(workload)
    return {
        "phase": workload.phase,
        "message": workload.message,
        "phaseChanged": timestamp(workload.phase_changed),
        "conditions": [workload_ready_condition(workload)],
        "replicas": workload.replicas,
        "readyReplicas": workload.ready_replicas,
        "availableReplicas": workload.available_replicas,
        "ready": f"{workload.ready_replicas}/{workload.replicas}",
        "pods": workload.pods,
        "labels": dict(workload.labels or {}),
        "securityGroups": workload_groups(workload),
        "uid": str(workload.uid),
        "resourceVersion": str(workload.resource_version),
        "actionsByRole": {
            role: allowed_actions(workload, role, sized=sized)
            for role in ("viewer", "operator", "admin")
        },
    }


def _publish(workload: Workload) -> None:
    resource_publish(
        tenant=workload.tenant, kind=EVENT_KIND, name=workload.name, data=workload_state(workload)
    )


def _enqueue(workload_id: int) -> None:
    from compute.tasks import kubernetes as tasks

    tasks.workload_apply.delay(workload_id)


enqueue_apply = _enqueue
publish_state = _publish
