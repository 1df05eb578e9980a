"""The VM pool controller's and the autoscalers' tasks (default queue): one pool (or
autoscaler) after a change, and every one from beat, so that a lost trigger or a member
changed outside the portal is converged within one interval."""

from __future__ import annotations

from celery import shared_task
from django.db.models import Q

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


@shared_task
def autoscalers_sweep() -> int:
    """Beat entry point, every ``ISOTOPE_AUTOSCALER_SECONDS``: one run per autoscaler."""
    # A Deployment's autoscaler is its HorizontalPodAutoscaler's job (Kubernetes'),
    # except scale to zero (minimum 0), which an HPA cannot do.
    wanted = Q(pool__isnull=False) | Q(workload__isnull=False, min_replicas=0)
    ids = list(Autoscaler.objects.filter(wanted).values_list("pk", flat=True))
    for autoscaler_id in ids:
        autoscaler_reconcile_task.delay(autoscaler_id)
    return len(ids)
