"""Celery tasks of the ``monitoring`` queue: webhook deliveries and housekeeping.

Thin: each loads fresh state through a service and is safe to run twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from monitoring import services
from monitoring.choices import DeliveryStatus

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, max_retries=None, ignore_result=True)
def webhook_deliver(self, delivery_id: int) -> None:
    """Attempt one webhook delivery; retry it later (backoff) while it is pending."""
    delivery = services.webhook_delivery_attempt(delivery_id=delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return
    countdown = max((delivery.next_attempt - timezone.now()).total_seconds(), 0)
    raise self.retry(countdown=countdown)


@shared_task(ignore_result=True)
def webhook_deliveries_requeue() -> int:
    """Beat: re-enqueue overdue pending deliveries (lost tasks, broker restarts)."""
    return services.webhook_deliveries_requeue()


@shared_task(ignore_result=True)
def events_prune() -> int:
    """Beat: delete events older than ``ISOTOPE_EVENT_RETENTION_DAYS`` (default 30)."""
    days = getattr(settings, "ISOTOPE_EVENT_RETENTION_DAYS", 30)
    deleted = services.events_prune(older_than=timezone.now() - timedelta(days=days))
    logger.info("pruned %s events older than %s days", deleted, days)
    return deleted
