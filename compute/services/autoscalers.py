"""Autoscalers for VM pools: the Kubernetes HorizontalPodAutoscaler (v2) algorithm
applied to a pool's members and the VM metrics Isotope already collects. (A Deployment's
autoscaler is a real HPA, ``compute/services/hpa.py``; this module only takes one with
minimum 0 the last step from 1 to 0, :func:`deployment_reconcile`.)

One run (:func:`autoscaler_reconcile`, from beat every ``ISOTOPE_AUTOSCALER_SECONDS``
and after a change) does what the HPA controller does in one sync:

1. Bounds first: a pool above ``max`` goes to ``max``, below ``min`` to ``min``; a pool
   at 0 replicas with ``min > 0`` is not scaled (``ScalingDisabled``), and one at 0 with
   ``min = 0`` has no member to measure, so it stays empty until scaled by hand.
2. The metric: each member's average utilisation over the last
   ``ISOTOPE_AUTOSCALER_METRIC_SECONDS`` of ``VMSample`` rows (the collector's): CPU is
   ``cpu_percent`` (100 = every vCPU busy), memory ``memory_used_mib`` over the member's
   memory. As the HPA's replica calculator: members Running and Ready with samples are
   measured; Running and Ready ones without samples are *missing* (counted at 100 %
   when the others ask to scale down, 0 % when they ask to scale up); members not yet
   Ready are *unready* (counted at 0 % when scaling up); other members are ignored.
   ``desired = ceil(measured × utilisation / target)``, unchanged when the ratio is
   within 10 % of 1 (the tolerance), or when counting the missing and unready members
   reverses or cancels the direction.
3. Stabilisation: the recommendation is the *highest* of this window's
   (``scale_down_window_seconds``, default 300 s) recommendations when it is below the
   current size, so a pool only shrinks to what every run of the window agreed on.
4. Rate limits per 15 s period (HPA's defaults, adjustable): at most
   ``max(scale_up_pods, scale_up_percent %)`` members added, at most
   ``scale_down_percent %`` removed; never above ``max`` or below ``min``.
5. Guardrails: never above what the tenant's quota still holds for another member, and
   no scale-up while the pool is ``Degraded`` (members stuck, creations refused) or
   while its members fail to boot (a ``MemberFailed`` in the last
   ``BOOT_FAILURE_SECONDS`` and no member Ready since).

Each decision and its reason is written on the autoscaler (``reason``, ``message``,
``decisions``), recorded as an event of kind ``autoscaler`` (when it changes the pool,
or the reason changes) and pushed live.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from compute.backends.base import BackendError
from compute.choices import AutoscalerMetric, ConditionStatus, Phase, PoolPhase, WorkloadKind
from compute.models import Autoscaler, VirtualMachine, VMPool, Workload
from compute.models.pools import MAX_REPLICAS
from compute.services import edits
from compute.services import vms as vm_services
from compute.services import workloads as workload_services
from compute.services.pools import SystemActor, _active, pool_scale, quota_room
from compute.texts import pools as texts
from monitoring.formats import timestamp
from monitoring.models import Event, VMSample
from monitoring.services import event_publish, resource_forget, resource_publish
from portal.exceptions import Conflict, ValidationError
from tenants.models import Tenant
from tenants.services import audit_record, authorize

logger = logging.getLogger(__name__)

TOLERANCE = 0.1
# HPA's default scaling-policy period: the step limits count changes within it.
PERIOD_SECONDS = 15
MAX_WINDOW_SECONDS = 3600
# A member failed this recently, and none turned Ready since: no scale-up.
BOOT_FAILURE_SECONDS = 300
DECISIONS_KEPT = 10
# The chart of replicas against the metric: one point per run for this long.
HISTORY_SECONDS = 3600
# Member phases that are on their way to Running (HPA's pending/unready pods).
BOOTING = frozenset({Phase.PENDING, Phase.PROVISIONING, Phase.STARTING})
# Reasons that are warnings (something stops the autoscaler from doing its job).
WARNING_REASONS = frozenset({"FailedGetMetrics", "ScaleUpBlocked", "ScaleUpLimitedByQuota"})
FIELDS = (
    "min_replicas",
    "max_replicas",
    "metric",
    "target",
    "scale_down_window_seconds",
    "scale_up_pods",
    "scale_up_percent",
    "scale_down_percent",
)


# --- The algorithm --------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """What the replica calculator gets: the measured members' utilisations (percent),
    how many members are missing a measurement, how many are not Ready yet."""

    utilisations: tuple[float, ...]
    missing: int = 0
    unready: int = 0


def metric_replicas(current: int, sample: Sample, target: float) -> tuple[int, float | None]:
    """The HPA replica calculator for a utilisation target: (replicas, the measured
    members' average utilisation). With nothing measured: (current, None)."""
    if not sample.utilisations:
        return current, None
    measured = len(sample.utilisations)
    # Whole percent, rounded down, as the HPA's integer utilisation: an idle member
    # (below 1 %) counts as 0, so an idle pool with min 0 can reach zero.
    utilisation = float(math.floor(sum(sample.utilisations) / measured))
    ratio = utilisation / target
    rebalance_unready = sample.unready > 0 and ratio > 1.0
    if not rebalance_unready and sample.missing == 0:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current, utilisation
        return math.ceil(ratio * measured), utilisation
    values = list(sample.utilisations)
    # Missing members: as busy as asked of them when shrinking, idle when growing.
    values += [100.0 if ratio < 1.0 else 0.0] * sample.missing
    if rebalance_unready:
        values += [0.0] * sample.unready
    new_ratio = sum(values) / len(values) / target
    if (
        abs(1.0 - new_ratio) <= TOLERANCE
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current, utilisation
    replicas = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, utilisation
    return replicas, utilisation


def stabilised(
    recommendations: list[dict], *, desired: int, current: int, now: float, window: int
) -> int:
    """HPA's stabilisation: below the current size, the highest recommendation of the
    last ``window`` seconds (this one included); scaling up is not delayed."""
    down = desired
    for recommendation in recommendations:
        if recommendation["t"] > now - window:
            down = max(down, recommendation["replicas"])
    return min(max(current, desired), down)


def step_limits(autoscaler: Autoscaler, *, current: int, now: float) -> tuple[int, int]:
    """(most, fewest) replicas allowed this period by the step limits, from the size at
    the period's start (the changes made within it undone)."""
    recent = [e["delta"] for e in autoscaler.scale_events if e["t"] > now - PERIOD_SECONDS]
    start_up = current - sum(d for d in recent if d > 0)
    start_down = current - sum(d for d in recent if d < 0)
    most = max(
        start_up + autoscaler.scale_up_pods,
        math.ceil(start_up * (1 + autoscaler.scale_up_percent / 100)),
    )
    fewest = int(start_down * (1 - autoscaler.scale_down_percent / 100))
    return max(most, current), min(fewest, current)


def members_sample(pool: VMPool, metric: str, *, now: datetime) -> Sample:
    """Classify the live members and measure the Ready ones from their samples. For
    CPU, as the HPA's CPU initialisation period: samples taken before a member turned
    Ready (its boot) are not counted, and a Ready member with no later sample yet is
    counted as not Ready."""
    members = _active(list(VirtualMachine.objects.filter(pool=pool)))
    measurable = [
        vm
        for vm in members
        if vm.phase in (Phase.RUNNING, Phase.MIGRATING) and vm.ready == ConditionStatus.TRUE
    ]
    unready = sum(
        1
        for vm in members
        if vm.phase in BOOTING or (vm.phase == Phase.RUNNING and vm.ready != ConditionStatus.TRUE)
    )
    since = now - timedelta(seconds=settings.ISOTOPE_AUTOSCALER_METRIC_SECONDS)
    ready_since = {vm.pk: vm.ready_changed for vm in measurable}
    values: dict[int, list[float]] = {}
    booting: set[int] = set()
    rows = VMSample.objects.filter(vm__in=measurable, time__gt=since, time__lte=now)
    for vm_id, time, cpu, memory in rows.values_list(
        "vm_id", "time", "cpu_percent", "memory_used_mib"
    ):
        if metric == AutoscalerMetric.CPU and ready_since[vm_id] and time <= ready_since[vm_id]:
            booting.add(vm_id)
            continue
        values.setdefault(vm_id, []).append(cpu if metric == AutoscalerMetric.CPU else memory)
    utilisations = []
    missing = 0
    for vm in measurable:
        row = values.get(vm.pk)
        if row is None:
            if vm.pk in booting:
                unready += 1
            else:
                missing += 1
            continue
        average = sum(row) / len(row)
        if metric == AutoscalerMetric.MEMORY:
            utilisations.append(min(average / vm.memory_mib * 100, 100.0))
        else:
            utilisations.append(average)
    return Sample(tuple(utilisations), missing=missing, unready=unready)


def boot_failure(pool: VMPool, *, now: datetime) -> str:
    """Why more members would only fail: the pool's last ``MemberFailed`` of the last
    ``BOOT_FAILURE_SECONDS`` when no member has turned Ready since it (its message);
    else ""."""
    failed = (
        Event.objects.filter(
            tenant_id=pool.tenant_id,
            kind="vmpool",
            object_uid=str(pool.uid),
            reason="MemberFailed",
            last_seen__gt=now - timedelta(seconds=BOOT_FAILURE_SECONDS),
        )
        .order_by("-last_seen")
        .first()
    )
    if failed is None:
        return ""
    recovered = VirtualMachine.objects.filter(
        pool=pool, ready=ConditionStatus.TRUE, ready_changed__gt=failed.last_seen
    ).exists()
    return "" if recovered else failed.message


# What was measured, by metric (the label's words before its parenthesis).
MEASURED = {
    AutoscalerMetric.CPU: texts.MEASURED_CPU,
    AutoscalerMetric.MEMORY: texts.MEASURED_MEMORY,
}


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    message: str
    utilisation: float | None


def decide(autoscaler: Autoscaler, pool: VMPool, *, now: datetime) -> tuple[Decision, int | None]:
    """One HPA sync for ``autoscaler`` (pool and autoscaler locked by the caller):
    the decision, and the metric's recommendation to remember (None when there is
    none)."""
    current = pool.replicas
    low, high = autoscaler.min_replicas, autoscaler.max_replicas
    what = AutoscalerMetric(autoscaler.metric).label.split(" (")[0]
    if current == 0 and low > 0:
        return Decision(0, "ScalingDisabled", texts.AT_ZERO, None), None
    if current > high:
        message = texts.ABOVE_MAXIMUM % {"high": high}
        return Decision(high, "TooManyReplicas", message, None), None
    if current < low:
        message = texts.BELOW_MINIMUM % {"low": low}
        return Decision(low, "TooFewReplicas", message, None), None
    if current == 0:
        return Decision(0, "ScaledToZero", texts.SCALED_TO_ZERO, None), None
    sample = members_sample(pool, autoscaler.metric, now=now)
    proposal, utilisation = metric_replicas(current, sample, autoscaler.target)
    if utilisation is None:
        return Decision(
            current,
            "FailedGetMetrics",
            texts.NO_SAMPLES
            % {
                "autoscaler_metric": what.lower(),
                "seconds": f"{settings.ISOTOPE_AUTOSCALER_METRIC_SECONDS:g}",
            },
            None,
        ), None
    measured = measured_text(autoscaler, utilisation)
    epoch = now.timestamp()
    desired = stabilised(
        autoscaler.recommendations,
        desired=proposal,
        current=current,
        now=epoch,
        window=autoscaler.scale_down_window_seconds,
    )
    values = {
        "measured": measured,
        "current": current,
        "desired": desired,
        "proposal": proposal,
        "window": autoscaler.scale_down_window_seconds,
    }
    reason, message = "DesiredWithinRange", texts.WITHIN_RANGE % values
    if desired != proposal:
        reason, message = "ScaleDownStabilized", texts.STABILIZED % values
    elif desired > current:
        reason, message = "ScaleUp", texts.SCALE_UP % values
    elif desired < current:
        reason, message = "ScaleDown", texts.SCALE_DOWN % values
    most, fewest = step_limits(autoscaler, current=current, now=epoch)
    if desired > min(most, high):
        limited = min(most, high)
        reason = "ScaleUpLimit" if limited == most else "TooManyReplicas"
        limit = texts.LIMITED_BY_STEP if limited == most else texts.LIMITED_BY_MAXIMUM
        message = limit % {"decision": message, "limited": limited}
        desired = limited
    elif desired < max(fewest, low):
        limited = max(fewest, low)
        reason = "ScaleDownLimit" if limited == fewest else "TooFewReplicas"
        limit = texts.LIMITED_BY_STEP if limited == fewest else texts.LIMITED_BY_MINIMUM
        message = limit % {"decision": message, "limited": limited}
        desired = limited
    if desired > current:
        if pool.phase == PoolPhase.DEGRADED:
            return Decision(
                current,
                "ScaleUpBlocked",
                texts.NOT_SCALING_UP % {"reason": pool.message},
                utilisation,
            ), proposal
        if failure := boot_failure(pool, now=now):
            return Decision(
                current,
                "ScaleUpBlocked",
                texts.NOT_SCALING_UP_BOOT % {"reason": failure},
                utilisation,
            ), proposal
        room, limiting = quota_room(pool)
        cap = max(current, pool.current_replicas + pool.warm_replicas + room)
        if desired > cap:
            reason = "ScaleUpLimitedByQuota"
            message = texts.LIMITED_BY_QUOTA % {
                "decision": message,
                "more": cap - current,
                "quota_resource": limiting,
            }
            desired = cap
    return Decision(desired, reason, message, utilisation), proposal


# --- The controller -------------------------------------------------------------------
def autoscaler_reconcile(autoscaler_id: int, *, now: datetime | None = None) -> Autoscaler | None:
    """One run of one autoscaler: decide, scale its pool when the decision says so,
    record the decision. Returns the autoscaler (None when it is gone). A Deployment's
    autoscaler: :func:`deployment_reconcile` (its HPA does the rest)."""
    now = now or timezone.now()
    if Autoscaler.objects.filter(pk=autoscaler_id, workload__isnull=False).exists():
        return deployment_reconcile(autoscaler_id, now=now)
    pool_id = Autoscaler.objects.filter(pk=autoscaler_id).values_list("pool_id", flat=True)
    with transaction.atomic():
        # Lock order pool → autoscaler, as the pool controller's delete takes them.
        pool = VMPool.locked(pool_id.first() or 0, "tenant")
        autoscaler = Autoscaler.locked(autoscaler_id, "tenant")
        if pool is None or autoscaler is None:
            return None
        if pool.deleting:
            return autoscaler
        decision, proposal = decide(autoscaler, pool, now=now)
        epoch = now.timestamp()
        keep = max(autoscaler.scale_down_window_seconds, PERIOD_SECONDS)
        recommendations = [r for r in autoscaler.recommendations if r["t"] > epoch - keep]
        if proposal is not None:
            recommendations.append({"t": epoch, "replicas": proposal})
        events = [e for e in autoscaler.scale_events if e["t"] > epoch - PERIOD_SECONDS]
        updates = {
            "current_metric": (
                round(decision.utilisation, 1) if decision.utilisation is not None else None
            ),
            "desired_replicas": decision.replicas,
            "reason": decision.reason,
            "message": decision.message[:1000],
            "last_run": now,
            "recommendations": recommendations,
            "scale_events": events,
        }
        before = pool.replicas
        updates["history"] = history_with(
            autoscaler, epoch=epoch, replicas=decision.replicas, metric=updates["current_metric"]
        )
        if decision.replicas != before:
            pool_scale(
                actor=SystemActor(f"autoscaler/{autoscaler.name}"),
                pool=pool,
                replicas=decision.replicas,
                reason=decision.message,
            )
            updates["decisions"] = decisions_with(
                autoscaler,
                when=now,
                before=before,
                to=decision.replicas,
                metric=updates["current_metric"],
                reason=decision.reason,
                message=decision.message,
            )
            updates["scale_events"] = [*events, {"t": epoch, "delta": decision.replicas - before}]
            updates["last_scale_time"] = now
            autoscaler_event(
                autoscaler,
                reason="SuccessfulRescale",
                message=texts.RESCALED
                % {"replicas": decision.replicas, "reason": decision.message},
            )
        elif decision.reason != autoscaler.reason:
            autoscaler_event(
                autoscaler,
                reason=decision.reason,
                message=decision.message,
                type="Warning" if decision.reason in WARNING_REASONS else "Normal",
            )
        autoscaler.write_locked(updates)
        publish(autoscaler)
    return autoscaler


def measured_text(autoscaler: Autoscaler, utilisation: float) -> str:
    """ "CPU utilisation 95% (target 50%)": what a decision's message says was measured.
    The metric's words are part of the format: a label of two words could not be read
    back apart from the number that follows it."""
    return MEASURED[autoscaler.metric] % {
        "utilisation": f"{utilisation:.0f}%",
        "target": f"{autoscaler.target}%",
    }


def decisions_with(
    autoscaler: Autoscaler, *, when: datetime, before, to, metric, reason: str, message: str
) -> list[dict]:
    """The decisions with one more first (the newest ``DECISIONS_KEPT`` kept): what
    every writer of ``decisions`` stores (a pool's run, an HPA's rescale event, a
    Deployment's scale to zero)."""
    entry = {
        "time": timestamp(when),
        "from": before,
        "to": to,
        "metric": metric,
        "reason": reason,
        "message": message,
    }
    return [entry, *autoscaler.decisions][:DECISIONS_KEPT]


def history_with(autoscaler: Autoscaler, *, epoch: float, replicas, metric) -> list[dict]:
    """The chart's points with one more (at ``epoch``), those older than
    ``HISTORY_SECONDS`` dropped: what every writer of ``history`` stores."""
    kept = [p for p in autoscaler.history if p["t"] > epoch - HISTORY_SECONDS]
    return [*kept, {"t": epoch, "replicas": replicas, "metric": metric}]


# --- Scale to zero for Deployments ----------------------------------------------------
def pods_utilisation(workload: Workload, metric: str) -> float | None:
    """The Deployment's pods' average utilisation of their requests (percent) from the
    cluster's metrics API, as the HPA computes it; None when there is no sample, no
    request to measure against, or the metrics API does not answer."""
    from compute.services.clusters import cluster_backend

    request = workload.cpu_request_m if metric == AutoscalerMetric.CPU else workload.memory_request
    if not request:
        return None
    try:
        usage = cluster_backend(workload.cluster).pod_usage(workload.namespace, workload.name)
    except BackendError as error:
        logger.info("no metrics for %s/%s: %s", workload.namespace, workload.name, error)
        return None
    if not usage:
        return None
    if metric == AutoscalerMetric.CPU:
        used = sum(u.cpu_m for u in usage.values())
    else:
        used = sum(u.memory_bytes for u in usage.values())
    return used / (request * len(usage)) * 100


def deployment_reconcile(autoscaler_id: int, *, now: datetime | None = None) -> Autoscaler | None:
    """Scale to zero where a HorizontalPodAutoscaler cannot (its minimum is at least 1):
    for a Deployment's autoscaler with minimum 0, one run takes the Deployment from 1
    replica to 0 when its pods' usage (the metrics API) was idle (below 1 %, as a pool's
    members) in every run of the scale-down window, through the workload's row-locked
    spec change (a new generation, applied as any other). At 0 its HPA stops acting
    (``ScalingDisabled``), and as a pool at zero it comes back when scaled by hand.
    Above 1 replica the HPA decides; each run there only restarts the window."""
    now = now or timezone.now()
    epoch = now.timestamp()
    seen = (
        Autoscaler.objects.select_related("workload__cluster", "workload__tenant")
        .filter(pk=autoscaler_id)
        .first()
    )
    if seen is None or seen.workload is None:
        return seen
    # Measured before the locks (a call to the cluster); used only if the Deployment is
    # still at 1 under a minimum of 0 once they are taken.
    utilisation = None
    if seen.min_replicas == 0 and seen.workload.replicas == 1:
        utilisation = pods_utilisation(seen.workload, seen.metric)
    with transaction.atomic():
        # Lock order Deployment → autoscaler, as the autoscaler API and the workload's
        # own changes take them.
        workload = workload_services.workload_locked_for_autoscaler(seen.workload_id)
        autoscaler = Autoscaler.locked(autoscaler_id, "tenant")
        if workload is None or autoscaler is None or autoscaler.workload_id != workload.pk:
            return autoscaler
        current = workload.replicas
        window = autoscaler.scale_down_window_seconds
        if autoscaler.min_replicas != 0 or current != 1:
            # At 0 there is nothing to measure; above 1 (or with a minimum) the HPA sizes
            # it. An idle window starts afresh at the next run at 1 (above 1: once this
            # run's size has left the window, as a pool's stabilisation would).
            above = autoscaler.min_replicas == 0 and current > 1
            wanted = [{"t": epoch, "replicas": current}] if above else []
            if wanted != autoscaler.recommendations:
                autoscaler.write_locked({"recommendations": wanted})
            return autoscaler
        kept = [r for r in autoscaler.recommendations if r["t"] > epoch - window]
        if autoscaler.metric != seen.metric:
            utilisation = None  # changed meanwhile: measure at the next run
        idle = utilisation is not None and math.floor(utilisation) == 0
        # The first run at 1 starts the window: the Deployment goes to 0 only once every
        # run of a whole window found it idle.
        seed = [] if kept else [{"t": epoch, "replicas": current}]
        recommendations = [*kept, *seed, {"t": epoch, "replicas": 0 if idle else current}]
        desired = stabilised(
            recommendations,
            desired=0 if idle else current,
            current=current,
            now=epoch,
            window=window,
        )
        if desired != 0:
            autoscaler.write_locked({"recommendations": recommendations})
            return autoscaler
        measured = measured_text(autoscaler, utilisation)
        message = texts.SCALE_DOWN % {"measured": measured, "current": current, "desired": 0}
        workload_services.workload_scale_to_zero(
            actor=SystemActor(f"autoscaler/{autoscaler.name}"), workload=workload, reason=message
        )
        metric = round(utilisation, 1)
        autoscaler.write_locked(
            {
                "recommendations": [],
                "decisions": decisions_with(
                    autoscaler,
                    when=now,
                    before=current,
                    to=0,
                    metric=metric,
                    reason="ScaledToZero",
                    message=message,
                ),
                "desired_replicas": 0,
                "current_metric": metric,
                "reason": "ScaledToZero",
                "message": texts.DEPLOYMENT_SCALED_TO_ZERO,
                "last_run": now,
                "last_scale_time": now,
                "history": history_with(autoscaler, epoch=epoch, replicas=0, metric=metric),
            }
        )
        autoscaler_event(
            autoscaler,
            reason="ScaledToZero",
            message=texts.RESCALED % {"replicas": 0, "reason": message},
        )
        publish(autoscaler)
        logger.info("autoscaler %s scaled %s to zero: %s", autoscaler.name, workload.name, message)
    return autoscaler


# --- Create, change, delete -----------------------------------------------------------
def _number(data: dict, field: str, low: int, high: int, errors: dict) -> int | None:
    value = data.get(field)
    try:
        if isinstance(value, bool) or value is None or str(value).strip() == "":
            raise ValueError
        number = int(str(value).strip())
    except (TypeError, ValueError):
        errors[field] = ["Enter a whole number."]
        return None
    if not low <= number <= high:
        errors[field] = [f"Must be between {low} and {high}."]
    return number


def _validate(data: dict) -> dict:
    """The settings as numbers within bounds, or ``ValidationError`` naming each field.
    A minimum of 0 is allowed for a Deployment too: its HPA keeps 1 and Isotope's
    controller takes an idle Deployment from 1 to 0 (:func:`deployment_reconcile`)."""
    errors: dict[str, list[str]] = {}
    bounds = {
        "min_replicas": (0, MAX_REPLICAS),
        "max_replicas": (1, MAX_REPLICAS),
        "target": (1, 100),
        "scale_down_window_seconds": (0, MAX_WINDOW_SECONDS),
        "scale_up_pods": (1, MAX_REPLICAS),
        "scale_up_percent": (0, 1000),
        "scale_down_percent": (1, 100),
    }
    clean = {field: _number(data, field, *bounds[field], errors) for field in bounds}
    if data.get("metric") not in AutoscalerMetric.values:
        errors["metric"] = [f"Choose one of {', '.join(AutoscalerMetric.values)}."]
    clean["metric"] = data.get("metric")
    if (
        not errors
        and clean["min_replicas"] is not None
        and clean["min_replicas"] > clean["max_replicas"]
    ):
        errors["min_replicas"] = ["Must not be above the maximum."]
    if errors:
        raise ValidationError(gettext("The autoscaler is not valid."), errors=errors)
    return clean


DEFAULTS = {
    "min_replicas": 1,
    "metric": AutoscalerMetric.CPU,
    "scale_down_window_seconds": 300,
    "scale_up_pods": 4,
    "scale_up_percent": 100,
    "scale_down_percent": 100,
}


def _unknown(settings_in: dict) -> None:
    unknown = set(settings_in) - set(FIELDS)
    if unknown:
        raise ValidationError(
            gettext("Unknown settings."),
            errors={field: [gettext("Unknown.")] for field in sorted(unknown)},
        )


def autoscaler_create(
    *,
    actor,
    tenant: Tenant,
    pool: VMPool | None = None,
    workload: Workload | None = None,
    name: str = "",
    **settings_in,
):
    """Attach an autoscaler to ``pool`` or to the Deployment ``workload`` (exactly one;
    one autoscaler per target). A pool's first run follows commit; a Deployment's
    HorizontalPodAutoscaler is written by the workload's apply task after commit, and
    the workload's quota charge becomes that of ``max_replicas`` pods (so the HPA can
    never take the tenant past its quota). ``settings_in``: the fields of ``FIELDS``
    (``max_replicas`` and ``target`` have no default)."""
    if (pool is None) == (workload is None):
        raise ValidationError(
            gettext("An autoscaler targets a VM pool or a Deployment."),
            errors={"scale_target": [gettext("Give a VM pool or a Deployment.")]},
        )
    target = pool or workload
    name = name or target.name
    authorize(
        actor=actor, tenant=tenant, permission="autoscaler.manage", target=f"autoscaler/{name}"
    )
    data = {**DEFAULTS, **{k: v for k, v in settings_in.items() if v is not None}}
    _unknown(data)
    errors: dict[str, list[str]] = {}
    if error := vm_services.name_error(name):
        errors["name"] = [error]
    elif Autoscaler.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [f"An autoscaler named {name!r} exists already in {tenant.slug}."]
    if workload is not None and workload.kind != WorkloadKind.DEPLOYMENT:
        errors["workload"] = [gettext("Only a Deployment can be autoscaled, not a single pod.")]
    try:
        clean = _validate(data)
    except ValidationError as error:
        errors.update(error.errors)
    if errors:
        raise ValidationError(gettext("The autoscaler is not valid."), errors=errors)
    try:
        with transaction.atomic():
            if pool is not None:
                pool = _lock_pool(pool, tenant)
            else:
                workload = _lock_workload(workload, tenant)
                # The quota holds the maximum: the HPA may size it anywhere up to that.
                workload_services.workload_recharge(
                    workload, max(clean["max_replicas"], workload.replicas)
                )
            autoscaler = Autoscaler.objects.create(
                tenant=tenant,
                name=name,
                pool=pool,
                workload=workload,
                # As the HPA controller seeds a new key: no scale-down before the pool's
                # size now has left the stabilisation window.
                recommendations=(
                    [{"t": timezone.now().timestamp(), "replicas": pool.replicas}] if pool else []
                ),
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
                **clean,
            )
            target_detail = {"pool": pool.name} if pool else {"deployment": workload.name}
            audit_record(
                actor=actor,
                action="autoscaler.create",
                tenant=tenant,
                target=f"autoscaler/{name}",
                detail={**target_detail, **clean},
            )
            autoscaler_event(
                autoscaler, reason="Created", message=_summary(autoscaler), new_object=True
            )
            publish(autoscaler)
            _after_change(autoscaler)
    except IntegrityError:
        raise ValidationError(
            gettext("An autoscaler with this name exists already."),
            errors={"name": [gettext("Taken.")]},
        ) from None
    return autoscaler


def _lock_pool(pool: VMPool, tenant: Tenant) -> VMPool:
    pool = VMPool.locked(pool.pk, "tenant")
    if pool is None or pool.tenant_id != tenant.pk or pool.deleting:
        raise Conflict(gettext("The VM pool is gone or being deleted."))
    if Autoscaler.objects.filter(pool=pool).exists():
        raise Conflict(
            gettext("%(pool)s has an autoscaler already.") % {"pool": pool.name},
            errors={"pool": [gettext("This pool has an autoscaler already.")]},
        )
    return pool


def _lock_workload(workload: Workload, tenant: Tenant) -> Workload:
    workload = Workload.locked(workload.pk, "tenant", "cluster")
    if workload is None or workload.tenant_id != tenant.pk or workload.deleting:
        raise Conflict(gettext("The Deployment is gone or being deleted."))
    if Autoscaler.objects.filter(workload=workload).exists():
        raise Conflict(
            gettext("%(workload)s has an autoscaler already.") % {"workload": workload.name},
            errors={"workload": [gettext("This Deployment has an autoscaler already.")]},
        )
    return workload


def _after_change(autoscaler: Autoscaler) -> None:
    """After commit: a pool's autoscaler runs; a Deployment's is written to the cluster
    (its HPA, and the Deployment without ``replicas``, or with them once it is gone).
    A Deployment's own state is published again in this transaction: whether it may
    be scaled by hand (its Scale button) follows its autoscaler, and a page that
    resyncs must not get the state published before the change."""
    if autoscaler.pool_id:
        transaction.on_commit(lambda: autoscaler_kick(autoscaler.pk))
    else:
        workload_id = autoscaler.workload_id
        # Unlocked (a workload's own writes lock it before its autoscaler): the snapshot
        # keeps the newer of this and a concurrent write's state (resourceVersion).
        workload = Workload.objects.select_related("tenant").filter(pk=workload_id).first()
        if workload is not None:
            workload_services.publish_state(workload)
        transaction.on_commit(lambda: workload_services.enqueue_apply(workload_id))


def _its_workload_locked(autoscaler: Autoscaler) -> Workload | None:
    """A Deployment's autoscaler: its workload's row, locked before the autoscaler's,
    in the order every writer of both takes them (a workload's own writes,
    ``deployment_reconcile``); the other order deadlocks with them. Its target never
    changes, so it is read unlocked."""
    workload_id = (
        Autoscaler.objects.filter(pk=autoscaler.pk).values_list("workload_id", flat=True).first()
    )
    return Workload.locked(workload_id, "tenant") if workload_id else None


def autoscaler_update(
    *, actor, autoscaler: Autoscaler, expected: Mapping | None = None, **changes
) -> Autoscaler:
    """Change the settings (the fields of ``FIELDS`` given); a new generation. A
    Deployment's quota charge follows a new maximum.

    ``expected`` (a form's edit, ``compute.services.edits``): field → the value the
    caller's page showed. A field someone changed since to another value than this
    edit's refuses the whole change (``Conflict``, each such field named)."""
    authorize(
        actor=actor,
        tenant=autoscaler.tenant,
        permission="autoscaler.manage",
        target=f"autoscaler/{autoscaler.name}",
    )
    _unknown(changes)
    with transaction.atomic():
        workload = _its_workload_locked(autoscaler) if "max_replicas" in changes else None
        row = Autoscaler.locked(autoscaler.pk, "tenant")
        if row is None:
            raise Conflict(gettext("The autoscaler is gone."))
        current = {field: getattr(row, field) for field in FIELDS}
        wanted = {**current, **{k: v for k, v in changes.items() if v is not None}}
        stale = edits.stale_fields(current, expected or {}, wanted)
        if stale:
            name = gettext("The autoscaler of %(target)s") % {"target": row.target_name}
            edits.refuse_stale(name, current, stale)
        clean = _validate(wanted)
        updates = {k: v for k, v in clean.items() if current[k] != v}
        if not updates:
            return row
        if workload is not None and "max_replicas" in updates:
            workload_services.workload_recharge(
                workload, max(clean["max_replicas"], workload.replicas)
            )
        row.write_locked({**updates, "generation": row.generation + 1})
        audit_record(
            actor=actor,
            action="autoscaler.update",
            tenant=row.tenant,
            target=f"autoscaler/{row.name}",
            detail=updates,
        )
        autoscaler_event(row, reason="Updated", message=_summary(row))
        publish(row)
        _after_change(row)
    return row


def autoscaler_delete(*, actor, autoscaler: Autoscaler) -> None:
    """Detach the autoscaler; the pool (or Deployment) keeps its current size. A
    Deployment's HorizontalPodAutoscaler is deleted by its apply task after commit,
    and its quota charge goes back to its current replicas."""
    authorize(
        actor=actor,
        tenant=autoscaler.tenant,
        permission="autoscaler.manage",
        target=f"autoscaler/{autoscaler.name}",
    )
    with transaction.atomic():
        workload = _its_workload_locked(autoscaler)
        row = Autoscaler.locked(autoscaler.pk, "tenant")
        if row is None:
            return
        if workload is not None:
            workload_services.workload_recharge(workload, workload.replicas)
        row.delete()
        audit_record(
            actor=actor,
            action="autoscaler.delete",
            tenant=row.tenant,
            target=f"autoscaler/{row.name}",
        )
        deleted = texts.AUTOSCALER_DELETED_HPA if row.workload_id else texts.AUTOSCALER_DELETED
        autoscaler_event(row, reason="Deleted", message=deleted)
        resource_forget(tenant=row.tenant, kind="autoscaler", name=row.name)
        _after_change(row)


def autoscaler_gone(autoscaler: Autoscaler) -> None:
    """Its target was deleted and took it along (the row cascaded): say so, live."""
    autoscaler_event(autoscaler, reason="Deleted", message=texts.AUTOSCALER_TARGET_DELETED)
    resource_forget(tenant=autoscaler.tenant, kind="autoscaler", name=autoscaler.name)


def _summary(autoscaler: Autoscaler) -> str:
    return texts.AUTOSCALER_SUMMARY % {
        "low": autoscaler.min_replicas,
        "high": autoscaler.max_replicas,
        "pool": autoscaler.target_name,
        "target": f"{autoscaler.target}%",
        "autoscaler_metric": autoscaler.metric,
        "window": autoscaler.scale_down_window_seconds,
    }


def autoscaler_event(
    autoscaler: Autoscaler,
    *,
    reason: str,
    message: str,
    type: str = "Normal",
    source: str = "isotope",
    new_object: bool = False,
) -> None:
    """``new_object``: its first event, in the transaction that makes it (see ``event_publish``)."""
    event_publish(
        new_object=new_object,
        tenant=autoscaler.tenant,
        kind="autoscaler",
        name=autoscaler.name,
        uid=str(autoscaler.uid),
        type=type,
        reason=reason,
        message=message,
        source=source,
    )


def autoscaler_state(autoscaler: Autoscaler) -> dict:
    """What live pages need to redraw an autoscaler's status and decisions."""
    return {
        "uid": str(autoscaler.uid),
        "resourceVersion": str(autoscaler.resource_version),
        "currentMetric": autoscaler.current_metric,
        "desiredReplicas": autoscaler.desired_replicas,
        "reason": autoscaler.reason,
        "message": autoscaler.message,
        "lastRun": timestamp(autoscaler.last_run) if autoscaler.last_run else None,
        "lastScaleTime": (
            timestamp(autoscaler.last_scale_time) if autoscaler.last_scale_time else None
        ),
        "decisions": autoscaler.decisions,
        "target": autoscaler.target,
        "targetKind": autoscaler.target_kind,
        "currentReplicas": autoscaler.current_replicas,
        "conditions": autoscaler.conditions,
        "history": autoscaler.history,
    }


def publish(autoscaler: Autoscaler) -> None:
    resource_publish(
        tenant=autoscaler.tenant,
        kind="autoscaler",
        name=autoscaler.name,
        data=autoscaler_state(autoscaler),
    )


def autoscaler_kick(autoscaler_id: int) -> None:
    from compute.tasks import pools as tasks

    tasks.autoscaler_reconcile_task.delay(autoscaler_id)
