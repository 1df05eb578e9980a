"""Template tag for the Snapshots panel on the VM page."""

from __future__ import annotations

from django import template
from django.urls import reverse

from compute import selectors
from compute.choices import Phase, SnapshotPhase
from compute.forms import flavor_label
from compute.services import snapshots as snapshot_services
from tenants import selectors as tenant_selectors

register = template.Library()


@register.inclusion_tag("compute/_vm_snapshots.html", takes_context=True)
def vm_snapshots_panel(context, vm):
    """The VM's snapshots (its disks taken together, newest first), then snapshots of
    its disks taken on their own, each with the buttons the user's role allows now."""
    request = context["request"]
    tenant = vm.tenant
    role = tenant_selectors.role_of(request.user, tenant)
    groups = []
    for group in snapshot_services.vm_snapshots(vm):
        for disk in group.disks:
            disk.role_actions = snapshot_services.snapshot_actions(disk, role)
        allowed = set.intersection(*(set(d.role_actions) for d in group.disks))
        group.size_gib = sum(d.size_gib for d in group.disks)
        groups.append((group, [a for a in ("restore", "delete") if a in allowed]))
    disk_snapshots = [
        (s, snapshot_services.snapshot_actions(s, role))
        for s in selectors.vm_disk_snapshots(request.user, tenant, vm)
    ]
    return {
        "request": request,
        "tenant": tenant,
        "vm": vm,
        "groups": groups,
        "disk_snapshots": disk_snapshots,
        "disk_names": [v.name for v in selectors.vm_volumes(request.user, tenant, vm)],
        "stopped": vm.phase == Phase.STOPPED,
        "settled": vm.phase in snapshot_services.LIVE_SNAPSHOT_PHASES,
        "running": vm.phase in (Phase.RUNNING, Phase.PAUSED),
        "memory_ok": vm.host is not None and vm.host.can("memory_state"),
        "can_snapshot": tenant_selectors.can(request.user, tenant, "snapshot.create"),
        "can_backup": tenant_selectors.can(request.user, tenant, "backup.create"),
    }


@register.inclusion_tag("compute/_snapshot_schedule.html", takes_context=True)
def snapshot_schedule_card(context, owner, kind: str):
    """The snapshot schedule of ``owner`` (a volume or a VM, ``kind``) and its form."""
    from compute.models import SnapshotSchedule

    request = context["request"]
    tenant = owner.tenant
    name = "volume-snapshot-schedule" if kind == "volume" else "vm-snapshot-schedule"
    return {
        "request": request,
        "owner": owner,
        "kind": kind,
        "schedule": SnapshotSchedule.objects.filter(**{kind: owner}).first(),
        "can_schedule": tenant_selectors.can(request.user, tenant, "snapshot.schedule"),
        "action_url": reverse(name, kwargs={"tenant": tenant.slug, "name": owner.name}),
    }


@register.inclusion_tag("compute/_vm_clone.html", takes_context=True)
def vm_clone_card(context, vm):
    """The Clone form, for users who may create VMs."""
    request = context["request"]
    tenant = vm.tenant
    disks = selectors.vm_volumes(request.user, tenant, vm)
    return {
        "request": request,
        "tenant": tenant,
        "vm": vm,
        "stopped": vm.phase == Phase.STOPPED,
        "storage_gib": sum(v.size_gib for v in disks if v.local),
        "root_gib": next((v.size_gib for v in disks if v.local and v.is_root), None),
        "flavors": [(f.name, flavor_label(f)) for f in selectors.flavors()],
        "snapshots": [
            g for g in snapshot_services.vm_snapshots(vm) if g.phase == SnapshotPhase.READY
        ],
    }
