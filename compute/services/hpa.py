"""Autoscalers of Deployments: a real HorizontalPodAutoscaler does the scaling.

Isotope writes the HPA (``autoscaling/v2``, named as the autoscaler, in the tenant's
namespace) from the autoscaler's settings, together with its Deployment, in the
workload's apply task (``compute.tasks.kubernetes.workload_apply``: one convergence
for both, under the workload's lock), and reads back what Kubernetes does:

- the HPA's status (the cluster watch's ``autoscalers`` resource): current and desired
  replicas, the current utilisation, the conditions and the last scale time, written on
  the autoscaler (row locked, compared: a repeat writes nothing) and pushed live; a new
  reason is an event of kind ``autoscaler``, as the pool autoscaler's are;
- the HPA's Kubernetes Events (the events watch): ``SuccessfulRescale`` ("New size: N;
  reason: …") becomes one of the autoscaler's ``decisions`` and a ``SuccessfulRescale``
  event, any other one an event of the autoscaler; each also joins the Deployment's
  timeline as Deployments' own Kubernetes Events do.

The Deployment's ``replicas`` then belong to the HPA: Isotope's manifest leaves them out
and the watch copies the live value onto the workload.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.backends.containers import AutoscalerInfo, AutoscalerSpec, ClusterEvent
from compute.models import Autoscaler, KubernetesCluster
from compute.services import autoscalers as autoscaler_services
from compute.texts import pools as texts
from tenants.models import Tenant

# A Kubernetes HPA's rescale message.
NEW_SIZE = re.compile(r"New size: (\d+); reason: (.*)", re.DOTALL)
# Characters an event reason may not have.
_REASON_CLEAN = re.compile(r"[^A-Za-z0-9]")


def _event_reason(text: str) -> str:
    """A Kubernetes reason as an event reason (one CamelCase word)."""
    reason = _REASON_CLEAN.sub("", text)[:64] or "Event"
    return reason[0].upper() + reason[1:]


def autoscaler_spec(autoscaler: Autoscaler) -> AutoscalerSpec:
    workload = autoscaler.workload
    return AutoscalerSpec(
        tenant=workload.tenant.slug,
        namespace=workload.namespace,
        name=autoscaler.name,
        deployment=workload.name,
        # A stock HPA's minimum is at least 1: Isotope's controller takes it from 1 to 0.
        min_replicas=max(autoscaler.min_replicas, 1),
        max_replicas=autoscaler.max_replicas,
        metric=autoscaler.metric,
        target=autoscaler.target,
        scale_down_window_seconds=autoscaler.scale_down_window_seconds,
        scale_down_percent=autoscaler.scale_down_percent,
        scale_up_pods=autoscaler.scale_up_pods,
        scale_up_percent=autoscaler.scale_up_percent,
        portal_uid=str(autoscaler.uid),
        portal_generation=autoscaler.generation,
    )


def condition_summary(conditions) -> tuple[str, str, bool]:
    """(reason, message, warning) of an HPA's conditions, the one that matters most
    first: a condition that stops it (ScalingActive or AbleToScale False), a limit hit
    (ScalingLimited True), a stabilised scale-down, then the ordinary state."""
    by_type = {c.get("type"): c for c in conditions}
    order = (
        ("ScalingActive", "False", True),
        ("AbleToScale", "False", True),
        ("ScalingLimited", "True", False),
    )
    for kind, status, warning in order:
        found = by_type.get(kind)
        if found and found.get("status") == status:
            return found.get("reason", ""), found.get("message", ""), warning
    able = by_type.get("AbleToScale") or {}
    if able.get("reason") == "ScaleDownStabilized":
        return able["reason"], able.get("message", ""), False
    for kind in ("ScalingLimited", "ScalingActive", "AbleToScale"):
        if found := by_type.get(kind):
            return found.get("reason", ""), found.get("message", ""), False
    return "", "", False


def _locked_by_namespace(cluster: KubernetesCluster, namespace: str, name: str):
    return (
        Autoscaler.objects.select_for_update(of=("self",))
        .select_related("tenant", "workload", "workload__tenant")
        .filter(
            workload__cluster=cluster,
            tenant__slug=Tenant.slug_of_namespace(namespace),
            name=name,
        )
        .first()
    )


def autoscaler_seen(
    cluster: KubernetesCluster, info: AutoscalerInfo, *, deleted: bool = False
) -> Autoscaler | None:
    """The watch saw an HPA of Isotope's change (or vanish)."""
    from compute.services import workloads as workload_services

    with transaction.atomic():
        row = _locked_by_namespace(cluster, info.namespace, info.name)
        if row is None:
            return None
        if deleted or info.deleted:
            if not row.workload.deleting:
                autoscaler_services.autoscaler_event(
                    row,
                    reason="DeletedOutsidePortal",
                    message=texts.HPA_DELETED_OUTSIDE,
                    type="Warning",
                )
                workload_id = row.workload_id
                transaction.on_commit(lambda: workload_services.enqueue_apply(workload_id))
            return row
        reason, message, warning = condition_summary(info.conditions)
        if reason == "ScalingDisabled" and row.min_replicas == 0 and row.workload.replicas == 0:
            # Isotope scaled it to zero: say so, and how it comes back (as a pool does).
            reason, message, warning = "ScaledToZero", texts.DEPLOYMENT_SCALED_TO_ZERO, False
        metric = None if info.current_utilisation is None else float(info.current_utilisation)
        # An HPA that could not compute a count says desiredReplicas 0 (its minimum is at
        # least 1, so 0 is never a decision): no decision, then.
        desired = info.desired_replicas or None
        updates = {
            "current_replicas": info.current_replicas,
            "desired_replicas": desired,
            "current_metric": metric,
            "conditions": list(info.conditions),
            "reason": reason[:40],
            "message": message[:1000],
            "last_scale_time": info.last_scale_time,
        }
        updates = {k: v for k, v in updates.items() if getattr(row, k) != v}
        if not updates:
            return row
        now = timezone.now()
        epoch = now.timestamp()
        updates["history"] = autoscaler_services.history_with(
            row, epoch=epoch, replicas=desired or info.current_replicas, metric=metric
        )
        updates["last_run"] = now
        if "reason" in updates and reason and reason != "ScaledToZero":
            autoscaler_services.autoscaler_event(
                row,
                reason=_event_reason(reason),
                message=texts.HPA_SAYS % {"message": message},
                type="Warning" if warning else "Normal",
                source="kubernetes",
            )
        row.write_locked(updates)
        autoscaler_services.publish(row)
    return row


def autoscaler_chart_tick(autoscaler_id: int, *, now=None) -> bool:
    """Beat's point on a Deployment autoscaler's chart: the HPA's status is written
    only when it changes, so a steady HPA would leave a gap. When the last point is
    ``ISOTOPE_AUTOSCALER_CHART_SECONDS`` old or more, add one with the replicas and
    metric last seen (row locked; the hour's window pruned as every point is).
    Nothing before the HPA's first status, or while the Deployment is being deleted.
    True when a point was added."""
    now = now or timezone.now()
    epoch = now.timestamp()
    with transaction.atomic():
        row = Autoscaler.locked(autoscaler_id, "tenant", "workload")
        if row is None or row.workload_id is None or row.workload.deleting:
            return False
        if row.last_run is None or row.current_replicas is None:
            return False
        last = row.history[-1]["t"] if row.history else 0
        if epoch - last < settings.ISOTOPE_AUTOSCALER_CHART_SECONDS:
            return False
        history = autoscaler_services.history_with(
            row,
            epoch=epoch,
            replicas=row.desired_replicas or row.current_replicas,
            metric=row.current_metric,
        )
        row.write_locked({"history": history})
        autoscaler_services.publish(row)
    return True


def autoscaler_seen_event(cluster: KubernetesCluster, event: ClusterEvent) -> Autoscaler | None:
    """A Kubernetes Event about an HPA of Isotope's: a rescale is a decision."""
    with transaction.atomic():
        row = _locked_by_namespace(cluster, event.namespace, event.object_name)
        if row is None:
            return None
        found = NEW_SIZE.match(event.message) if event.reason == "SuccessfulRescale" else None
        if found is None:
            autoscaler_services.autoscaler_event(
                row,
                reason=_event_reason(event.reason),
                message=texts.HPA_SAYS % {"message": event.message},
                type="Warning" if event.type == "Warning" else "Normal",
                source="kubernetes",
            )
            return row
        size, why = int(found[1]), found[2].strip()
        when = event.last_seen or timezone.now()
        before = row.current_replicas if row.current_replicas is not None else row.workload.replicas
        decisions = autoscaler_services.decisions_with(
            row,
            when=when,
            before=before,
            to=size,
            metric=row.current_metric,
            reason="SuccessfulRescale",
            message=why,
        )
        row.write_locked({"decisions": decisions, "last_scale_time": when})
        autoscaler_services.autoscaler_event(
            row,
            reason="SuccessfulRescale",
            message=texts.RESCALED % {"replicas": size, "reason": why},
            source="kubernetes",
        )
        autoscaler_services.publish(row)
    return row
