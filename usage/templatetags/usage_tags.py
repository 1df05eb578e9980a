"""Template filters for usage pages: unit-hours and money, the way people read them."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma

register = template.Library()


def _number(value: Decimal, places: int) -> str:
    quantum = Decimal(1).scaleb(-places)
    text = intcomma(f"{value.quantize(quantum, ROUND_HALF_UP):f}")
    return text


@register.filter
def hours(line, metric: str) -> str:
    """``line.hours[metric]`` with two decimals (four below 0.01, so small is not 0)."""
    value = line.hours.get(metric, Decimal(0))
    if value and abs(value) < Decimal("0.01"):
        return _number(value, 4)
    return _number(value, 2)


@register.filter
def money(line) -> str:
    """``EUR 12.34`` (several currencies joined), or an empty string when unpriced."""
    return " + ".join(
        f"{currency} {_number(amount, 2)}" for currency, amount in sorted(line.cost.items())
    )


@register.filter
def share(part, whole) -> int:
    """``part`` as a whole percentage of ``whole`` (for bars)."""
    try:
        return int(min(Decimal(part) * 100 / Decimal(whole), Decimal(100))) if whole else 0
    except (ArithmeticError, TypeError, ValueError):
        return 0


@register.inclusion_tag("usage/_quota_requests.html", takes_context=True)
def quota_requests(context, tenant):
    """The overview's quota requests card, with the "Request more quota" form for the
    tenant's admins; rows are patched live (static/js/quota.js)."""
    from tenants.models import QUOTA_LABELS, QUOTA_RESOURCES
    from usage.selectors import quota_requests_of
    from usage.services.requests import describe_amounts

    allowed = context.get("allowed") or {}
    rows = [
        {
            "request": r,
            "increase": describe_amounts(r.increase),
            "granted": describe_amounts(r.granted),
        }
        for r in quota_requests_of(tenant)
    ]
    return {
        "tenant": tenant,
        "rows": rows,
        "pending": any(r["request"].pending for r in rows),
        "can_request": bool(allowed.get("quota_request")),
        "resources": [(r, QUOTA_LABELS[r], unit) for r, unit in QUOTA_RESOURCES.items()],
        "csrf_token": context.get("csrf_token"),
        "request": context.get("request"),
    }
