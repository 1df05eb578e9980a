"""Quota nearly exhausted: tell a tenant's admins once per crossing of 80 % and 95 %.

:func:`quota_alerts_check` runs inside every ledger change (the quota row is locked by
then, so two changes cannot both announce one crossing) and after every limit change.
Each resource's last announced level is kept in ``QuotaAlert``: rising past a level
announces it once; falling below lowers the kept level, so the next rise announces
again. An hourly sweep (:func:`quota_alerts_sweep`) records what no ledger change
crossed: a limit change's crossing whose re-check failed, a changed list of levels.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from monitoring.choices import EventType, NotificationKind, NotificationLevel
from portal import sql
from tenants.choices import Role
from tenants.models import QUOTA_LABELS, QUOTA_RESOURCES, Membership, Quota, Tenant
from usage import texts
from usage.models import QuotaAlert

logger = logging.getLogger(__name__)


def alert_levels() -> list[int]:
    """The percentages that are announced, ascending (``ISOTOPE_QUOTA_ALERT_LEVELS``)."""
    return sorted(int(p) for p in getattr(settings, "ISOTOPE_QUOTA_ALERT_LEVELS", [80, 95]))


def _percent(used, limit) -> Decimal:
    if not limit:
        return Decimal(100) if used > 0 else Decimal(0)
    return Decimal(used) * 100 / Decimal(limit)


def _level(quota: Quota, resource: str, levels, less=0) -> int:
    """The highest alert level ``resource``'s use has reached (0: none); ``less``: the
    level of the use without that amount (before a charge of it)."""
    percent = _percent(quota.used(resource) - less, quota.limit(resource))
    return max((p for p in levels if percent >= p), default=0)


def _plain(value) -> str:
    if isinstance(value, Decimal):
        value = value.normalize()
        return str(int(value)) if value == value.to_integral_value() else str(value)
    return str(value)


def quota_alerts_check(
    *,
    tenant: Tenant,
    locked: Quota | None = None,
    added: dict | None = None,
) -> list[dict]:
    """Compare each resource's use with the alert levels; announce new crossings
    (event ``QuotaNearlyExhausted`` + a notification to the tenant's admins). Returns
    the crossings announced. Must run in a transaction (it locks the quota row;
    ``locked``: the row the caller holds locked, its counters current). ``added``: the
    amounts a charge just added to ``locked``'s counters (they only grew); when they
    moved no resource past a level (below every level now, each was below before too),
    this charge crossed nothing, and the kept levels are read only when one did (a
    tenant above a level would read them on every create: bench/README.md,
    ``accept_cpu``). Kept levels that differ from the use without a crossing are a
    limit change's, which its own re-check records, or a changed list of levels: the
    hourly :func:`quota_alerts_sweep` records those."""
    if locked is not None and locked.tenant_id == tenant.pk:
        quota = locked
    else:
        quota = Quota.objects.select_for_update().filter(tenant=tenant).first()
    if quota is None:
        return []
    levels = alert_levels()
    reached = {r: _level(quota, r, levels) for r in QUOTA_RESOURCES}
    if added is not None and (
        not any(reached.values())
        or all(_level(quota, r, levels, less=added.get(r, 0)) == reached[r] for r in reached)
    ):
        return []
    # Written out (portal.sql): a tenant above a level pays this on every charge.
    kept = {a.resource: a for a in sql.select(QuotaAlert, "tenant_id = %s", [tenant.pk])}
    crossed: list[dict] = []
    for resource in QUOTA_RESOURCES:
        used, limit = quota.used(resource), quota.limit(resource)
        percent = _percent(used, limit)
        level = reached[resource]
        alert = kept.get(resource)
        before = alert.level if alert else 0
        if level == before:
            continue
        if alert is None:
            QuotaAlert.objects.create(tenant=tenant, resource=resource, level=level)
        else:
            QuotaAlert.objects.filter(pk=alert.pk).update(level=level)
        if level > before:
            crossed.append(
                {
                    "resource": resource,
                    "level": level,
                    "used": _plain(used),
                    "limit": _plain(limit),
                    "unit": QUOTA_RESOURCES[resource],
                    "percent": int(percent),
                }
            )
    if crossed:
        _announce(tenant, crossed)
    return crossed


def _announce(tenant: Tenant, crossed: list[dict]) -> None:
    from monitoring.notifications import notify
    from monitoring.services import event_publish

    parts = [
        texts.CROSSED
        % {
            "quota_resource": QUOTA_LABELS[c["resource"]],
            "used": c["used"],
            "limit": c["limit"],
            "unit": c["unit"],
            "percent": f"{c['percent']} %",
            "level": f"{c['level']} %",
        }
        for c in crossed
    ]
    message = texts.NEARLY_EXHAUSTED % {"crossed": "; ".join(parts)}
    event_publish(
        tenant=tenant,
        kind="quota",
        name="quota",
        reason="QuotaNearlyExhausted",
        type=EventType.WARNING,
        message=message,
    )
    admins = [
        m.user
        for m in Membership.objects.filter(
            tenant=tenant, role=Role.ADMIN, user__is_active=True
        ).select_related("user")
    ]
    top = max(c["level"] for c in crossed)
    notify(
        users=admins,
        kind=NotificationKind.QUOTA_THRESHOLD,
        title=texts.NEARLY_EXHAUSTED_TITLE % {"tenant": tenant.name, "percent": f"{top} %"},
        message=texts.NEARLY_EXHAUSTED_NOTICE % {"crossed": "; ".join(parts)},
        tenant=tenant,
        link=f"/t/{tenant.slug}/",
        level=NotificationLevel.WARNING if top < max(alert_levels()) else NotificationLevel.DANGER,
    )


def quota_alerts_recheck(*, tenant: Tenant) -> list[dict]:
    """:func:`quota_alerts_check` in a transaction of its own (after a limit change)."""
    with transaction.atomic():
        return quota_alerts_check(tenant=tenant)


def quota_alerts_sweep() -> int:
    """Check again every tenant whose kept levels are not the levels its use has reached
    now; returns how many. A charge reads the kept levels only when its own amounts
    crossed one (``added``), so a level no charge crossed is recorded here: one a limit
    change crossed whose re-check after its commit never ran or failed, or one that
    ``ISOTOPE_QUOTA_ALERT_LEVELS`` gained or lost. Two reads for all tenants; a lock
    and a transaction only for those that differ (beat, hourly)."""
    levels = alert_levels()
    kept = {
        (tenant_id, resource): level
        for tenant_id, resource, level in QuotaAlert.objects.values_list(
            "tenant_id", "resource", "level"
        )
    }
    differ = [
        quota.tenant
        for quota in Quota.objects.select_related("tenant").iterator(chunk_size=2000)
        if any(
            _level(quota, r, levels) != kept.get((quota.tenant_id, r), 0) for r in QUOTA_RESOURCES
        )
    ]
    for tenant in differ:
        try:
            quota_alerts_recheck(tenant=tenant)
        except Exception:  # noqa: BLE001 - one tenant's failure does not stop the others
            logger.exception("could not check the quota alert levels of %s", tenant)
    return len(differ)
