"""Pages for backups: the Backups page (``/t/<tenant>/backups/``: the list with live
progress), "Back up" from a VM's or a volume's snapshot (a page that asks for the backup's name),
"Restore to new VM" (a page that asks for the new VM's name), "Restore a disk" (one
backed-up disk into a new volume) and delete (asks first).

Thin, as the other views: ``compute.services.backups`` checks roles, phases, files and
quota; refusals come back as messages or field errors.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from compute import selectors
from compute.listing import PER_PAGE, list_page, search_apply, search_query
from compute.services import backups as backup_services
from compute.services import snapshots as snapshot_services
from compute.volume_views import _vm_or_404, _volume_or_404, _with_fields
from monitoring import live
from portal.exceptions import ApplicationError, Conflict, NotFound
from portal.web import tenant_view
from tenants import selectors as tenant_selectors


def _backup_or_404(request, tenant, name: str):
    try:
        return selectors.backup_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _refusal(request, error: ApplicationError) -> None:
    if isinstance(error, Conflict):
        messages.warning(request, error.message)
    else:
        messages.error(request, _with_fields(error))


@tenant_view("backup.view")
def backup_list(request, tenant):
    """The tenant's backups, newest first, with their export progress, a page at a time
    (``?page=&per_page=``) and searched by name (``?q=``)."""
    baseline = live.page_baseline(tenant)
    query = search_query(request.GET)
    everything = selectors.backups_for_tenant(request.user, tenant)
    # No phase counts here: the page's keys come with the count of every match
    # (list_page's window count), one statement.
    page = list_page(search_apply(everything, query), request.GET.get("page"), query.per_page)
    backups = list(page.object_list)
    for backup in backups:
        backup.allowed = backup_services.backup_actions(backup, request.role)
        backup.source = backup_services.backup_source(backup)
    return render(
        request,
        "compute/backup_list.html",
        {
            "tenant": tenant,
            "page": page,
            "backups": backups,
            # A search that matches nothing asks whether there is any backup at all.
            "any_backups": bool(page.paginator.count) or (query.active and everything.exists()),
            "query": query,
            "can_restore": tenant_selectors.can(request.user, tenant, "backup.restore"),
            "can_delete": tenant_selectors.can(request.user, tenant, "backup.delete"),
            "live_baseline": baseline,
            "per_page_min": PER_PAGE[0],
        },
        status=400 if query.errors else 200,
    )


def _backup_form(request, tenant, *, source: str, snapshot: str, create, context: dict):
    """The "Back up" page of ``source``'s snapshot: GET asks for the name; POST runs
    ``create(name)`` and opens the Backups page, or shows the refusal."""
    backup_name = request.POST.get("name", f"{source}-{snapshot}"[:63]).strip()
    if request.method == "POST":
        try:
            create(backup_name)
        except ApplicationError as error:
            _refusal(request, error)
        else:
            messages.success(
                request,
                gettext("Backing up snapshot %(snapshot)s of %(vm)s as %(name)s.")
                % {"snapshot": snapshot, "vm": source, "name": backup_name},
            )
            return redirect("backup-list", tenant=tenant.slug)
    return render(
        request,
        "compute/backup_form.html",
        {"tenant": tenant, "source": source, "snapshot": snapshot, "name": backup_name, **context},
        status=400 if request.method == "POST" else 200,
    )


@tenant_view("backup.create")
@require_http_methods(["GET", "POST"])
def backup_create(request, tenant, name: str, snapshot: str):
    """ "Back up" on a VM snapshot: ask for the backup's name, then start the export."""
    vm = _vm_or_404(request, tenant, name)
    found = snapshot_services.vm_snapshots(vm, snapshot)
    if not found:
        raise Http404(f"Snapshot {snapshot!r} of {vm.name} not found.")
    group = found[0]
    return _backup_form(
        request,
        tenant,
        source=vm.name,
        snapshot=group.name,
        create=lambda backup_name: backup_services.backup_create(
            actor=request.user, vm=vm, snapshot=group.name, name=backup_name
        ),
        context={
            "vm": vm,
            "disks": group.disks,
            "size_gib": sum(d.size_gib for d in group.disks),
            "cancel_url": reverse("vm-detail", args=(tenant.slug, vm.name)) + "#snapshots",
        },
    )


@tenant_view("backup.create")
@require_http_methods(["GET", "POST"])
def volume_backup_create(request, tenant, name: str, snapshot: str):
    """ "Back up" on a volume's snapshot: ask for the backup's name, then export it."""
    volume = _volume_or_404(request, tenant, name)
    try:
        found = selectors.snapshot_get(request.user, volume, snapshot)
    except NotFound as error:
        raise Http404(error.message) from None
    return _backup_form(
        request,
        tenant,
        source=volume.name,
        snapshot=found.name,
        create=lambda backup_name: backup_services.volume_backup_create(
            actor=request.user, volume=volume, snapshot=found.name, name=backup_name
        ),
        context={
            "vm": None,
            "disks": [found],
            "size_gib": found.size_gib,
            "cancel_url": reverse("volume-detail", args=(tenant.slug, volume.name)) + "#snapshots",
        },
    )


@tenant_view("backup.restore")
@require_http_methods(["GET", "POST"])
def backup_restore(request, tenant, name: str):
    """ "Restore to new VM": ask for the new VM's name; on success, the new VM's page."""
    backup = _backup_or_404(request, tenant, name)
    vm_name = request.POST.get("name", "").strip()
    if request.method == "POST":
        try:
            vm = backup_services.backup_restore(
                actor=request.user,
                backup=backup,
                name=vm_name,
                start=bool(request.POST.get("start")),
            )
        except ApplicationError as error:
            _refusal(request, error)
        else:
            messages.success(
                request,
                gettext("Restoring backup %(backup)s into the new VM %(vm)s.")
                % {"backup": backup.name, "vm": vm.name},
            )
            return redirect("vm-detail", tenant=tenant.slug, name=vm.name)
    return render(
        request,
        "compute/backup_restore.html",
        {"tenant": tenant, "backup": backup, "name": vm_name},
        status=400 if request.method == "POST" else 200,
    )


@tenant_view("backup.restore")
@require_http_methods(["GET", "POST"])
def backup_restore_disk(request, tenant, name: str):
    """ "Restore a disk": one backed-up disk into a new volume attached to nothing; on
    success, the new volume's page (where it can be attached to a VM)."""
    backup = _backup_or_404(request, tenant, name)
    devices = [backup_services.disk_key(d) for d in backup.disks]
    disk = request.POST.get("disk", request.GET.get("disk", devices[-1] if devices else ""))
    volume_name = request.POST.get("name", "").strip()
    if request.method == "POST":
        try:
            volume = backup_services.backup_restore_disk(
                actor=request.user, backup=backup, disk=disk, name=volume_name
            )
        except ApplicationError as error:
            _refusal(request, error)
        else:
            messages.success(
                request,
                gettext(
                    "Restoring disk %(disk)s of backup %(backup)s into the new volume %(volume)s."
                )
                % {"disk": disk, "backup": backup.name, "volume": volume.name},
            )
            return redirect("volume-detail", tenant=tenant.slug, name=volume.name)
    return render(
        request,
        "compute/backup_restore_disk.html",
        {
            "tenant": tenant,
            "backup": backup,
            "source": backup_services.backup_source(backup),
            "disk": disk,
            "name": volume_name or f"{backup.name}-{disk}"[:63],
        },
        status=400 if request.method == "POST" else 200,
    )


@tenant_view("backup.delete")
@require_http_methods(["GET", "POST"])
def backup_delete(request, tenant, name: str):
    """Delete a backup: GET asks first, POST deletes."""
    backup = _backup_or_404(request, tenant, name)
    if request.method == "POST":
        try:
            backup_services.backup_delete(actor=request.user, backup=backup)
        except ApplicationError as error:
            _refusal(request, error)
        else:
            messages.success(request, gettext("Deleting backup %(name)s.") % {"name": backup.name})
        return redirect("backup-list", tenant=tenant.slug)
    return render(request, "compute/backup_delete.html", {"tenant": tenant, "backup": backup})
