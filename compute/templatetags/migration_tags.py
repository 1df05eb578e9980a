"""``{% migration_panel vm %}``: the VM page's live-migration card (Migrate action,
live progress of the running migration, history), drawn from the selectors."""

from __future__ import annotations

from django import template

from compute import selectors
from compute.models import Host
from compute.services import migrations as services
from tenants import selectors as tenant_selectors

register = template.Library()


@register.inclusion_tag("compute/_migration_panel.html", takes_context=True)
def migration_panel(context, vm):
    request = context["request"]
    user = request.user
    tenant = vm.tenant
    history = list(selectors.migrations_for_tenant(user, tenant, vm_name=vm.name)[:10])
    staff = bool(user.is_staff)
    return {
        "request": request,
        "tenant": tenant,
        "vm": vm,
        "history": history,
        "current": next((m for m in history if m.active), None),
        "can_migrate": tenant_selectors.can(user, tenant, "vm.migrate"),
        "can_cancel": tenant_selectors.can(user, tenant, "migration.cancel"),
        "refusal": services.migration_refusal(vm, staff=staff) if vm.phase != "Migrating" else "",
        "capable": vm.host is not None and vm.host.can("live_migration"),
        "staff": staff,
        "targets": Host.objects.exclude(pk=vm.host_id).filter(enabled=True, maintenance=False)
        if staff
        else [],
    }
