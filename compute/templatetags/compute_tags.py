"""Template tags for compute panels shown on other apps' pages (the tenant overview,
the profile page's confirmation settings)."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext

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


def ready_display(phase: str, condition: dict) -> dict:
    """How the Ready condition reads next to the phase: "Ready" once the guest (or every
    pod) is up, "Booting…" while a running VM's guest is not yet, nothing otherwise (the
    phase says it). static/js/live.js (readyDisplay) words it the same way."""
    if condition["status"] == "True" and phase in ("Running", "Migrating"):
        return {"state": "ready", "label": gettext("Ready")}
    if phase == "Running":
        label = gettext("Rebooting…") if condition["reason"] == "Rebooting" else gettext("Booting…")
        return {"state": "waiting", "label": label}
    return {"state": "none", "label": ""}


@register.inclusion_tag("compute/_ready.html")
def ready_badge(obj):
    """The Ready badge of a VM or a workload."""
    from compute.models import VirtualMachine
    from compute.services.readiness import ready_condition, workload_ready_condition

    if isinstance(obj, VirtualMachine):
        condition = ready_condition(obj)
    else:
        condition = workload_ready_condition(obj)
    return {"condition": condition, "display": ready_display(obj.phase, condition)}


@register.filter
def phase_label(phase: str) -> str:
    """A phase word in the reader's language (the value itself stays in ``data-phase``)."""
    from compute.choices import PHASE_LABELS

    return PHASE_LABELS.get(phase, phase)


@register.filter
def cpu(millicores: int) -> str:
    """Millicores as a Kubernetes quantity: 500 → 500m, 2000 → 2."""
    from compute.quantities import format_cpu

    return format_cpu(int(millicores))


@register.filter
def memory(size: int) -> str:
    """Bytes as a Kubernetes quantity: 268435456 → 256Mi."""
    from compute.quantities import format_memory

    return format_memory(int(size))


@register.inclusion_tag("compute/_workload_summary.html", takes_context=True)
def workload_summary(context, tenant):
    """The tenant's workloads: how many per phase, pods ready, the newest few."""
    request = context["request"]
    workloads = selectors.workloads_for_tenant(request.user, tenant)
    return {
        "request": request,
        "tenant": tenant,
        "counts": selectors.workload_phase_counts(request.user, tenant),
        "pods": selectors.workload_pod_totals(request.user, tenant),
        "total": workloads.count(),
        "recent": list(workloads.order_by("-created", "-id")[:SUMMARY_ROWS]),
        "can_create": tenant_selectors.can(request.user, tenant, "workload.create"),
    }


@register.inclusion_tag("compute/_dashboard_line.html", takes_context=True)
def compute_line(context, tenant):
    """One line for a dashboard card: the tenant's VMs and workloads side by side."""
    request = context["request"]
    return {
        "tenant": tenant,
        "vms": selectors.vms_for_tenant(request.user, tenant).count(),
        "vm_counts": selectors.vm_phase_counts(request.user, tenant),
        "workloads": selectors.workloads_for_tenant(request.user, tenant).count(),
        "workload_counts": selectors.workload_phase_counts(request.user, tenant),
        "pods": selectors.workload_pod_totals(request.user, tenant),
    }


@register.inclusion_tag("compute/_confirm_preferences.html", takes_context=True)
def confirm_preferences(context):
    """The profile page's switches: which destructive VM actions ask first."""
    from tenants.choices import Confirmation

    request = context["request"]
    skipped = tenant_selectors.confirmations_skipped(request.user)
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "confirmations": [
            {"value": value, "label": label, "ask": value not in skipped}
            for value, label in Confirmation.choices
        ],
    }


@register.filter
def sort_link(query, column: str) -> str:
    """The URL that sorts a list by ``column`` (compute.listing.ListQuery)."""
    return query.sort_link(column)


@register.filter
def aria_sort(query, column: str) -> str:
    """``ascending``, ``descending`` or ``none``: how the list is sorted by ``column``."""
    return query.aria_sort(column)


@register.simple_tag
def page_link(query, number) -> str:
    """A pagination link that keeps the list's search, filters and sort."""
    return "?" + query.params(page=number)
