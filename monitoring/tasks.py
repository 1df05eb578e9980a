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


@shared_task(ignore_result=True)
def metrics_collect_all() -> int:
    """Beat (every ``ISOTOPE_METRICS_SECONDS``): one collection task per host. A task
    not started within one interval expires, so a slow host does not pile them up."""
    from monitoring.collector import metrics_hosts

    hosts = metrics_hosts()
    for host_id in hosts:
        metrics_collect.apply_async((host_id,), expires=settings.ISOTOPE_METRICS_SECONDS)
    return len(hosts)


@shared_task(ignore_result=True)
def metrics_collect(host_id: int) -> int:
    """Collect one host's counters into samples and publish them (see
    ``monitoring.collector.metrics_collect``). An unreachable host is skipped: the
    next interval tries again, so no retry."""
    from compute.backends import TransientBackendError
    from compute.models import Host
    from monitoring.collector import metrics_collect as collect

    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return 0
    try:
        return collect(host=host).samples
    except TransientBackendError as error:
        logger.warning("no metrics from %s this time: %s", host, error)
        return 0


@shared_task(ignore_result=True)
def metrics_rollup() -> int:
    """Beat (5 min): average raw samples into 5-minute rollups, then apply retention."""
    from monitoring.collector import metrics_prune
    from monitoring.collector import metrics_rollup as rollup

    written = rollup()
    samples, rollups = metrics_prune()
    logger.info(
        "metrics: %s rollups written, %s samples and %s rollups pruned", written, samples, rollups
    )
    return written


@shared_task(bind=True, acks_late=True, max_retries=5, ignore_result=True)
def notification_email(self, notification_id: int) -> None:
    """Send one notification by email (once); retry a mail server that failed."""
    from monitoring.notifications import notification_email_send

    try:
        notification_email_send(notification_id=notification_id)
    except Exception as error:  # noqa: BLE001 - SMTP and socket errors alike: try later
        logger.warning("email for notification %s failed: %s", notification_id, error)
        raise self.retry(countdown=min(30 * 2**self.request.retries, 900)) from error


@shared_task(ignore_result=True)
def notification_emails_requeue() -> int:
    """Beat (5 min): queue again the emails whose task was lost."""
    from monitoring.notifications import notification_emails_pending

    pending = notification_emails_pending()
    for pk in pending:
        notification_email.apply_async((pk,), retry=False)
    return len(pending)
