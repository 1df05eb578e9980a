"""Celery tasks of the usage app (queue ``monitoring``): the rollup and alert-level beats."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def usage_rollup() -> int:
    """Beat (``ISOTOPE_USAGE_ROLLUP_SECONDS``, 5 min): roll closed hours into hourly and
    daily usage rows (idempotent; see ``usage.services.metering.usage_rollup``)."""
    from usage.services.metering import usage_rollup as rollup

    result = rollup()
    if result.hours:
        logger.info("usage: %s hours rolled up (%s rows)", result.hours, result.hourly_rows)
    return result.hours


@shared_task(ignore_result=True)
def quota_alerts_sweep() -> int:
    """Beat (hourly): tenants whose kept alert levels differ from their use are checked
    again (``usage.services.alerts.quota_alerts_sweep``)."""
    from usage.services.alerts import quota_alerts_sweep as sweep

    checked = sweep()
    if checked:
        logger.info("usage: alert levels of %s tenants checked again", checked)
    return checked
