"""Template tags for the volumes panel on the VM page."""

from __future__ import annotations

from django import template

from compute import selectors
from compute.services import volumes as volume_services
from tenants import selectors as tenant_selectors

register = template.Library()


@register.inclusion_tag("compute/_vm_volumes.html", takes_context=True)
def vm_volumes_panel(context, vm):
    """The VM's volumes (root disk first), their devices, and a form to attach one."""
    request = context["request"]
    tenant = vm.tenant
    volumes = list(selectors.vm_volumes(request.user, tenant, vm))
    role = tenant_selectors.role_of(request.user, tenant)
    can_attach = tenant_selectors.can(request.user, tenant, "volume.attach")
    for volume in volumes:
        volume.can_detach = "detach" in volume_services.allowed_actions(volume, role)
    return {
        "request": request,
        "tenant": tenant,
        "vm": vm,
        "volumes": volumes,
        "can_attach": can_attach,
        "can_create": tenant_selectors.can(request.user, tenant, "volume.create"),
        "attachable": list(selectors.attachable_volumes(request.user, tenant, vm))
        if can_attach
        else [],
        "vm_takes_volumes": vm.phase in volume_services.ATTACHABLE_VM_PHASES,
    }


@register.filter
def copied_gib(vm) -> int:
    """GiB of ``vm``'s volumes a live migration copies (those in its host's own pool)."""
    return sum(v.size_gib for v in volume_services.migrating_volumes(vm))
