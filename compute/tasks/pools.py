"""The VM pool controller's tasks (default queue): one pool after a change, and every
pool from beat, so that a lost trigger or a member changed outside the portal is
converged within one interval."""

from __future__ import annotations

from celery import shared_task

from compute.models import VMPool
from compute.services import pools as services


@shared_task(acks_late=True)
def pool_reconcile_task(pool_id: int) -> None:
    """Converge one pool (safe to run twice: the pool's row lock serialises runs, and a
    run with nothing to do writes nothing)."""
    services.pool_reconcile(pool_id)


@shared_task
def pools_sweep() -> int:
    """Beat entry point: one controller run per pool. Returns how many were queued."""
    ids = list(VMPool.objects.values_list("pk", flat=True))
    for pool_id in ids:
        pool_reconcile_task.delay(pool_id)
    return len(ids)
