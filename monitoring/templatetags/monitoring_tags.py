"""Template tags for monitoring: event tables, the VM detail charts, tenant usage totals."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext_lazy as _

from monitoring import selectors
from monitoring.groups import tenant_group

register = template.Library()

RANGE_LABELS = {"1h": "1 h", "6h": "6 h", "24h": "24 h", "7d": "7 d"}
CHARTS = [
    # xgettext:no-python-format
    ("cpu", _("CPU (% of vCPUs)")),
    ("mem", _("Memory used (MiB)")),
    ("disk", _("Disk (bytes/s)")),
    ("net", _("Network (bytes/s)")),
]


@register.inclusion_tag("monitoring/_event_table.html")
def event_table(
    tenant,
    events,
    *,
    kind: str = "",
    name: str = "",
    filters: dict | None = None,
    live: bool = True,
    page_size: int = selectors.RECENT_EVENTS,
    testid: str = "event-timeline",
    empty_text: str = _("No events yet. They appear here as they happen."),
):
    """A live event table: the tenant's timeline, or (``kind``/``name``) the recent
    events of one object, compact. ``events`` were read by the view (visible to the
    user); static/js/events.js adds what arrives on the tenant's stream."""
    compact = bool(kind)
    return {
        "events": events,
        "stream": tenant_group(tenant.slug),
        "object": f"{kind}/{name}" if compact else "",
        "compact": compact,
        "filters": filters or {},
        "live": live,
        "page_size": page_size,
        "testid": testid,
        "table_id": testid,
        "empty_text": empty_text,
    }


@register.inclusion_tag("monitoring/_vm_metrics.html")
def vm_metrics(tenant, vm):
    """Chart card of ``vm`` (already resolved by the view, so visible to the user)."""
    return {
        "tenant": tenant,
        "vm": vm,
        "metric_ranges": [(key, RANGE_LABELS[key]) for key in selectors.METRIC_RANGES],
        "metric_charts": CHARTS,
    }


@register.inclusion_tag("monitoring/_tenant_usage.html")
def tenant_usage(tenant):
    """Totals of the tenant's running VMs (the page's view resolved the tenant)."""
    return {"tenant": tenant, "totals": selectors.tenant_metric_totals(tenant)}


@register.inclusion_tag("monitoring/_notification_preferences.html", takes_context=True)
def notification_preferences(context):
    """The profile page's card: how the user hears about each kind of notification."""
    from monitoring.choices import NotificationKind
    from monitoring.notifications import preferences_of

    request = context["request"]
    chosen = preferences_of(request.user)
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "has_email": bool(request.user.email),
        "kinds": [
            {"value": value, "label": label, **chosen[value]}
            for value, label in NotificationKind.choices
        ],
    }


NOTIFICATION_ICONS = {
    "info": "bi-info-circle",
    "success": "bi-check-circle",
    "warning": "bi-exclamation-triangle",
    "danger": "bi-x-octagon",
}


@register.filter
def notification_icon(level: str) -> str:
    """The Bootstrap icon of a notification level (notifications.js uses the same)."""
    return NOTIFICATION_ICONS.get(level, "bi-info-circle")
