"""Periodic clean-up of compute bookkeeping (default queue)."""

from __future__ import annotations

from celery import shared_task

from compute.services.idempotency import idempotency_prune


@shared_task
def idempotency_keys_prune() -> int:
    """Forget expired Idempotency-Key answers (beat, hourly)."""
    return idempotency_prune()
