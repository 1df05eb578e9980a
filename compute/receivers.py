"""Signal receivers of the compute app."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from portal.signals import quota_changed

logger = logging.getLogger(__name__)


@receiver(quota_changed, dispatch_uid="compute.quota_changed")
def on_quota_changed(sender, tenant, **kwargs) -> None:
    """The tenant's limits changed (sent after commit): its namespaces' ResourceQuota
    mirrors them, so provisioning runs again where the tenant has a namespace."""
    from compute.tasks import kubernetes as tasks

    try:
        tasks.quota_changed.delay(tenant.pk)
    except Exception:  # noqa: BLE001 - a broker outage must not fail the quota change
        logger.exception("could not enqueue re-provisioning of %s", tenant)
