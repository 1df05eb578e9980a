"""Template tags for metrics: the VM detail charts and the tenant usage totals."""

from __future__ import annotations

from django import template

from monitoring import selectors

register = template.Library()

RANGE_LABELS = {"1h": "1 h", "6h": "6 h", "24h": "24 h", "7d": "7 d"}
CHARTS = [
    ("cpu", "CPU (% of vCPUs)"),
    ("mem", "Memory used (MiB)"),
    ("disk", "Disk (bytes/s)"),
    ("net", "Network (bytes/s)"),
]


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
