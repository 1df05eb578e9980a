"""Template tags for compute panels shown on other apps' pages (the tenant overview)."""

from __future__ import annotations

from django import template

from compute import selectors
from tenants import selectors as tenant_selectors

register = template.Library()

SUMMARY_ROWS = 5


@register.inclusion_tag("compute/_vm_summary.html", takes_context=True)
def vm_summary(context, tenant):
    """The tenant's VMs: how many per phase and the most recently created few."""
    request = context["request"]
    vms = selectors.vms_for_tenant(request.user, tenant)
    return {
        "request": request,
        "tenant": tenant,
        "counts": selectors.vm_phase_counts(request.user, tenant),
        "total": vms.count(),
        "recent": list(vms.order_by("-created", "-id")[:SUMMARY_ROWS]),
        "can_create": tenant_selectors.can(request.user, tenant, "vm.create"),
    }
