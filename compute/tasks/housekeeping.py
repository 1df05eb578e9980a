"""Periodic clean-up of compute bookkeeping (default queue)."""

from __future__ import annotations

import logging

from celery import shared_task

from compute import scheduler
from compute.services.idempotency import idempotency_prune

logger = logging.getLogger(__name__)


@shared_task
def idempotency_keys_prune() -> int:
    """Forget expired Idempotency-Key answers (beat, hourly)."""
    return idempotency_prune()


@shared_task(ignore_result=True)
def hosts_recount() -> int:
    """Beat (hourly): hosts whose placed counters differ from the sums of their VM and
    migration rows are counted again, each a warning (the database's triggers keep them
    right: a host found off had rows written around them). Cheap when none is off: one
    statement compares them all."""
    if not scheduler.hosts_miscounted():
        return 0
    fixed = scheduler.hosts_recount()
    for name, (counted, summed) in sorted(fixed.items()):
        logger.warning(
            "host %s: placed vCPUs, MiB and VMs were %s, the rows sum to %s; recounted",
            name,
            counted,
            summed,
        )
    return len(fixed)
