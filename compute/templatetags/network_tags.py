"""The VM page's interfaces panel."""

from __future__ import annotations

from django import template

from compute import selectors
from compute.services import networks as network_services
from tenants import selectors as tenant_selectors

register = template.Library()


@register.inclusion_tag("compute/_vm_nics.html", takes_context=True)
def vm_nics_panel(context, vm):
    """The VM's network interfaces with their addresses, and a form to add one."""
    request = context["request"]
    tenant = vm.tenant
    role = tenant_selectors.role_of(request.user, tenant)
    nics = list(selectors.vm_nic_rows(request.user, vm))
    for nic in nics:
        nic.allowed = network_services.nic_actions(nic, role)
    can_attach = tenant_selectors.can(request.user, tenant, "nic.attach")
    return {
        "request": request,
        "tenant": tenant,
        "vm": vm,
        "nics": nics,
        "can_attach": can_attach,
        "can_detach": tenant_selectors.can(request.user, tenant, "nic.detach"),
        "networks": list(selectors.networks_for_tenant(request.user, tenant).filter(phase="Ready"))
        if can_attach
        else [],
        "security_groups": list(selectors.security_groups_for_tenant(request.user, tenant))
        if can_attach
        else [],
    }
