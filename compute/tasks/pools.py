"""The VM pool controller's and the autoscalers' tasks (default queue): one pool (or
autoscaler) after a change, and every one from beat, so that a lost trigger or a member
changed outside the portal is converged within one interval."""

from __future__ import annotations

from celery import shared_task

from compute.models import Autoscaler, VMPool
from compute.services import autoscalers as autoscaler_services
from compute.services import pools as services


@shared_task(acks_late=True)
def pool_reconcile_task(pool_id: int, announce: bool = True) -> None:
    """Converge one pool (safe to run twice: the pool's row lock serialises runs, and a
    run with nothing to do writes nothing)."""
    services.pool_reconcile(pool_id, announce=announce)


@shared_task
def pools_sweep() -> int:
    """Beat entry point: one controller run per pool. Returns how many were queued."""
    ids = list(VMPool.objects.values_list("pk", flat=True))
    for pool_id in ids:
        pool_reconcile_task.delay(pool_id, announce=False)
    return len(ids)


@shared_task(acks_late=True)
def autoscaler_reconcile_task(autoscaler_id: int) -> None:
    """One autoscaler run (its pool's and its own row locks serialise runs)."""
    autoscaler_services.autoscaler_reconcile(autoscaler_id)


@shared_task(acks_late=True)
def autoscaler_chart_task(autoscaler_id: int) -> None:
    """A Deployment autoscaler's chart point when its last one is old (idempotent: a
    second run finds a fresh point and writes nothing)."""
    from compute.services import hpa

    hpa.autoscaler_chart_tick(autoscaler_id)


@shared_task
def autoscalers_sweep() -> int:
    """Beat entry point, every ``ISOTOPE_AUTOSCALER_SECONDS``: one run per pool
    autoscaler and per Deployment autoscaler with minimum 0 (a Deployment's autoscaler
    is its HorizontalPodAutoscaler's job, Kubernetes', except scale to zero, which an HPA
    cannot do), and a chart point for every Deployment autoscaler. Returns how many
    autoscalers it looked at."""
    rows = list(Autoscaler.objects.values_list("pk", "pool_id", "min_replicas"))
    for autoscaler_id, pool_id, low in rows:
        if pool_id or low == 0:
            autoscaler_reconcile_task.delay(autoscaler_id)
        if not pool_id:
            autoscaler_chart_task.delay(autoscaler_id)
    return len(rows)
