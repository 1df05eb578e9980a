"""Pages for live migration: the Migrate action and cancel on the VM page (tenant
admins), the platform staff's page of running and queued migrations and host drains.

Thin: services decide, selectors read; refusals become flash messages.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from compute import selectors
from compute.choices import ACTIVE_MIGRATION_PHASES
from compute.models import Host, HostDrain, Migration
from compute.services import migrations as services
from portal.exceptions import ApplicationError, NotFound
from portal.web import tenant_view


@tenant_view("vm.migrate")
@require_POST
def vm_migrate(request, tenant, name: str):
    """Request a live migration of the VM (staff may name the target host)."""
    try:
        vm = selectors.vm_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None
    target = request.POST.get("target", "") if request.user.is_staff else None
    # The page's script submits in place (Accept: application/json) and keeps the page,
    # its console and its live stream; without script the form posts and comes back.
    in_place = "application/json" in request.headers.get("Accept", "")
    try:
        migration = services.migration_request(
            actor=request.user, vm=vm, target=target or None, note=request.POST.get("reason", "")
        )
    except ApplicationError as error:
        if in_place:
            return JsonResponse({"level": "error", "message": error.message}, status=error.status)
        messages.error(request, error.message)
    else:
        text = gettext("Live migration of %(name)s requested.") % {"name": vm.name}
        if in_place:
            return JsonResponse(
                {"level": "success", "message": text, "migration": str(migration.uid)}, status=202
            )
        messages.success(request, text)
    return redirect("vm-detail", tenant=tenant.slug, name=vm.name)


@tenant_view("migration.cancel")
@require_POST
def migration_cancel(request, tenant, uid):
    """Cancel one of the tenant's migrations; back to its VM's page."""
    try:
        migration = selectors.migration_get(request.user, tenant, uid)
    except NotFound as error:
        raise Http404(error.message) from None
    try:
        services.migration_cancel(actor=request.user, migration=migration)
    except ApplicationError as error:
        messages.warning(request, error.message)
    else:
        messages.success(request, gettext("Cancellation requested."))
    return redirect("vm-detail", tenant=tenant.slug, name=migration.vm_name)


def _staff_rows() -> dict:
    active = list(
        Migration.objects.filter(phase__in=ACTIVE_MIGRATION_PHASES)
        .select_related("tenant", "source", "target")
        .order_by("created")
    )
    recent = list(
        Migration.objects.exclude(phase__in=ACTIVE_MIGRATION_PHASES)
        .select_related("tenant", "source", "target")
        .order_by("-finished")[:20]
    )
    drains = list(HostDrain.objects.select_related("host")[:5])
    for drain in drains:
        moves = list(drain.migrations.all())
        drain.total = len(moves)
        drain.done = sum(1 for m in moves if m.phase == "Succeeded")
        drain.failed = sum(1 for m in moves if m.phase in ("Failed", "Cancelled"))
        drain.percent = round(100 * drain.done / drain.total) if drain.total else 100
    return {"active": active, "recent": recent, "drains": drains}


@staff_member_required
@require_GET
def staff_migrations(request):
    """Running and queued migrations of every tenant, hosts with Drain, recent drains."""
    return render(
        request,
        "compute/migrations_staff.html",
        {
            **_staff_rows(),
            "hosts": Host.objects.order_by("name"),
            "policy": services.policy_cluster(),
        },
    )


@staff_member_required
@require_GET
def staff_migrations_state(request):
    """The same as JSON, polled by the staff page (it watches every tenant at once)."""
    rows = _staff_rows()

    def row(m: Migration) -> dict:
        return {
            **services.migration_state(m),
            "tenant": m.tenant.slug,
            "source": m.source.name,
            "target": m.target.name if m.target else None,
        }

    return JsonResponse(
        {
            "active": [row(m) for m in rows["active"]],
            "drains": [
                {"id": d.pk, "done": d.done, "failed": d.failed, "total": d.total}
                for d in rows["drains"]
            ],
        }
    )


@staff_member_required
@require_POST
def host_drain(request, host: str):
    """Maintenance on, every VM away; the page then shows the drain's progress."""
    obj = get_object_or_404(Host, name=host)
    drain = services.host_drain(actor=request.user, host=obj)
    moving = drain.migrations.count()
    messages.success(
        request,
        f"Draining {obj.name}: {moving} VM(s) migrating, {len(drain.unmovable)} cannot move.",
    )
    return redirect("staff-migrations")
