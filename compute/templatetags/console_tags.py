"""``{% console_panel vm %}``: the embedded console panel (VM detail page).

It connects on demand (a click asks the API for a ticket), so merely viewing the VM does
not take one of the user's console sessions.
"""

from __future__ import annotations

from django import template

from compute.services import console as console_services
from tenants import selectors as tenant_selectors

register = template.Library()


@register.inclusion_tag("compute/_console.html", takes_context=True)
def console_panel(context, vm):
    user = context["request"].user
    return {
        "request": context["request"],
        "tenant": vm.tenant,
        "vm": vm,
        "allowed": tenant_selectors.can(user, vm.tenant, "vm.console"),
        "unavailable": console_services.console_unavailable_reason(vm),
        "view_only": console_services.console_view_only(user, vm),
        "autoconnect": False,
        "embedded": True,
    }
