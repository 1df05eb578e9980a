"""Signal receivers: meter every ledger change, keep a deleted VM's figures, follow
limit changes (live quota bars, alert levels)."""

from __future__ import annotations

import logging

from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver
from django.utils import timezone

from portal.signals import ledger_changed, quota_changed, quota_charged
from tenants.models import Reservation

logger = logging.getLogger(__name__)


@receiver(ledger_changed, dispatch_uid="usage.ledger_changed")
def on_ledger_changed(
    sender,
    reservation: Reservation,
    opened: bool,
    quota=None,
    name="",
    labels=None,
    charged=True,
    new_ref=False,
    **kwargs,
) -> None:
    """Inside the ledger's transaction: open or close the reservation's interval, and
    see whether the tenant's use crossed an alert level (on ``quota``, the locked row,
    when the ledger passes it; not before the counters hold the reservation: then on
    ``quota_charged``). ``new_ref``: the reservation's ref is a new object's."""
    from usage.services import alerts, metering

    if not metering.metered(reservation):
        pass  # e.g. a network's: the meter counts no network-hours
    elif opened:
        metering.interval_open(reservation=reservation, name=name, labels=labels, new_ref=new_ref)
    else:
        metering.interval_close(reservation=reservation)
    if charged:
        alerts.quota_alerts_check(tenant=reservation.tenant, locked=quota)


@receiver(quota_charged, dispatch_uid="usage.quota_charged")
def on_quota_charged(sender, tenant, quota, added, **kwargs) -> None:
    """Inside the transaction: reservations recorded before the lock are in the
    counters now (``added``: their sum); see whether the use crossed an alert level."""
    from usage.services import alerts

    alerts.quota_alerts_check(tenant=tenant, locked=quota, added=added)


@receiver(post_delete, sender=Reservation, dispatch_uid="usage.reservation_deleted")
def on_reservation_deleted(sender, instance: Reservation, **kwargs) -> None:
    """A live reservation deleted without a release (its tenant was deleted): its
    usage stops now."""
    if instance.released is None:
        from usage.services import metering

        metering.interval_close(reservation=instance, at=timezone.now())


@receiver(pre_delete, sender="compute.VirtualMachine", dispatch_uid="usage.vm_deleted")
def on_vm_deleted(sender, instance, **kwargs) -> None:
    """Keep what the VM used since the last rollup: its samples go with its row."""
    from usage.services import metering

    metering.used_flush(vm=instance)


@receiver(quota_changed, dispatch_uid="usage.quota_changed")
def on_quota_changed(sender, tenant, **kwargs) -> None:
    """After a limit change commits: live quota bars, and alert levels re-checked (a
    lower limit can cross one, a higher one resets it)."""
    from usage.services import alerts, requests

    try:
        requests.quota_publish(tenant=tenant)
    except Exception:  # noqa: BLE001 - the limit change stands; the next change publishes
        logger.exception("could not publish the quota change of %s", tenant)
    try:
        alerts.quota_alerts_recheck(tenant=tenant)
    except Exception:  # noqa: BLE001 - the limit change stands; the hourly sweep re-checks
        logger.exception("could not check the alert levels after the quota change of %s", tenant)
