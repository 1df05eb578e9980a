"""Pages for snapshots and clones: the volume page's Snapshots panel (take, restore,
delete) and Clone form, the VM page's Snapshots panel (a snapshot of all the VM's disks
together: take, restore, delete) and Clone form, and both pages' snapshot schedule.

Thin, as the other views: the services check roles, phases and quota; refusals come
back as messages on the volume page. Restore asks for the volume's name on a
confirmation page (its data is replaced); delete asks first too.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from compute import selectors
from compute.services import clones as clone_services
from compute.services import snapshot_schedules as schedule_services
from compute.services import snapshots as snapshot_services
from compute.volume_views import _vm_or_404, _volume_or_404, _with_fields
from portal.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from portal.web import tenant_view
from tenants import services as tenant_services

SNAPSHOT_ACTIONS = {
    # action: (label, icon, tone, question)
    "restore": (
        _("Restore"),
        "arrow-counterclockwise",
        "warning",
        _(
            "Restore {volume} from snapshot {snapshot}? Everything written to {volume} since "
            "the snapshot was taken is lost. Type the volume's name to confirm."
        ),
    ),
    "delete": (
        _("Delete snapshot"),
        "trash",
        "danger",
        _("Delete snapshot {snapshot} of {volume}? Its copy is removed; {volume} is not changed."),
    ),
}


def _detail(tenant, volume) -> str:
    return reverse("volume-detail", kwargs={"tenant": tenant.slug, "name": volume.name})


def _report(request, call, done: str) -> bool:
    try:
        call()
    except Conflict as error:
        messages.warning(request, error.message)
    except ApplicationError as error:
        messages.error(request, _with_fields(error))
    else:
        messages.success(request, done)
        return True
    return False


@tenant_view("snapshot.create")
@require_POST
def snapshot_take(request, tenant, name: str):
    """The Snapshots panel's "Take snapshot" form."""
    volume = _volume_or_404(request, tenant, name)
    snapshot_name = request.POST.get("name", "")
    _report(
        request,
        lambda: snapshot_services.snapshot_create(
            actor=request.user, volume=volume, name=snapshot_name
        ),
        gettext("Taking snapshot %(snapshot)s of %(volume)s.")
        % {"snapshot": snapshot_name.strip(), "volume": volume.name},
    )
    return redirect(f"{_detail(tenant, volume)}#snapshots")


@tenant_view("volume.view")
@require_http_methods(["GET", "POST"])
def snapshot_action(request, tenant, name: str, snapshot: str, action: str):
    """GET (or a POST without the confirmation) asks first; POST restores or deletes."""
    volume = _volume_or_404(request, tenant, name)
    try:
        found = selectors.snapshot_get(request.user, volume, snapshot)
    except NotFound as error:
        raise Http404(error.message) from None
    back = f"{_detail(tenant, volume)}#snapshots"
    return _ask_then_run(
        request,
        tenant,
        action=action,
        target=f"volume/{volume.name}/snapshot/{found.name}",
        template="compute/snapshot_confirm.html",
        context={"volume": volume, "snapshot": found, "size_gib": found.size_gib},
        question=SNAPSHOT_ACTIONS[action][3].format(volume=volume.name, snapshot=found.name),
        back=back,
        restore=(
            lambda confirm: snapshot_services.snapshot_restore(
                actor=request.user, snapshot=found, confirm=confirm
            ),
            gettext("Restoring %(volume)s from snapshot %(snapshot)s.")
            % {"volume": volume.name, "snapshot": found.name},
        ),
        delete=(
            lambda: snapshot_services.snapshot_delete(actor=request.user, snapshot=found),
            gettext("Deleting snapshot %(snapshot)s.") % {"snapshot": found.name},
        ),
    )


def _ask_then_run(
    request, tenant, *, action, target, template, context, question, back, restore, delete
):
    """The role check, then the confirmation page (GET, or a POST without the
    confirmation), then the restore (``confirm`` typed) or the delete; a refused
    restore asks again, with the reason as a message."""
    try:
        tenant_services.authorize(
            actor=request.user,
            tenant=tenant,
            permission=snapshot_services.SNAPSHOT_ACTIONS[action][0],
            target=target,
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    label, icon, tone, _ = SNAPSHOT_ACTIONS[action]
    confirm = request.POST.get("confirm", "")
    asked = confirm == "yes" if action == "delete" else bool(confirm)
    if request.method == "GET" or not asked:
        return render(
            request,
            template,
            {
                "tenant": tenant,
                **context,
                "action": action,
                "label": label,
                "icon": icon,
                "tone": tone,
                "question": question,
                "back": back,
            },
        )
    if action == "restore":
        run, done = restore
        if not _report(request, lambda: run(confirm), done):
            return redirect(request.path)
    else:
        run, done = delete
        _report(request, run, done)
    return redirect(back)


@tenant_view("volume.clone")
@require_POST
def volume_clone(request, tenant, name: str):
    """The volume page's "Clone" form (of its data now, or of one of its Ready
    snapshots): on success, the new volume's page."""
    volume = _volume_or_404(request, tenant, name)
    new_name = request.POST.get("name", "").strip()
    snapshot = request.POST.get("snapshot", "").strip()
    source = f"{volume.name}@{snapshot}" if snapshot else volume.name
    if _report(
        request,
        lambda: snapshot_services.volume_clone(
            actor=request.user, volume=volume, name=new_name, snapshot=snapshot
        ),
        gettext("Cloning %(volume)s into %(name)s.") % {"volume": source, "name": new_name},
    ):
        return redirect("volume-detail", tenant=tenant.slug, name=new_name)
    return redirect(f"{_detail(tenant, volume)}#clone")


# --- Snapshots of a VM (the VM page's panel) ---------------------------------------------
VM_SNAPSHOT_QUESTIONS = {
    "restore": _(
        "Restore every disk of {vm} from snapshot {snapshot}? Everything written to "
        "them since the snapshot was taken is lost. Type the VM's name to confirm."
    ),
    "delete": _(
        "Delete snapshot {snapshot} of {vm}? The copies of its disks are removed; "
        "{vm} is not changed."
    ),
}


def _vm_detail(tenant, vm) -> str:
    return reverse("vm-detail", kwargs={"tenant": tenant.slug, "name": vm.name}) + "#snapshots"


@tenant_view("snapshot.create")
@require_POST
def vm_snapshot_take(request, tenant, name: str):
    """The VM page's "Take VM snapshot" form: all the VM's disks together."""
    vm = _vm_or_404(request, tenant, name)
    snapshot_name = request.POST.get("name", "")
    _report(
        request,
        lambda: snapshot_services.vm_snapshot_create(
            actor=request.user, vm=vm, name=snapshot_name, memory=request.POST.get("memory", "")
        ),
        gettext("Taking snapshot %(snapshot)s of %(vm)s's disks.")
        % {"snapshot": snapshot_name.strip(), "vm": vm.name},
    )
    return redirect(_vm_detail(tenant, vm))


@tenant_view("vm.view")
@require_http_methods(["GET", "POST"])
def vm_snapshot_action(request, tenant, name: str, snapshot: str, action: str):
    """GET (or a POST without the confirmation) asks first; POST restores or deletes
    the VM's snapshot ``snapshot`` (all its disks)."""
    vm = _vm_or_404(request, tenant, name)
    found = snapshot_services.vm_snapshots(vm, snapshot)
    if not found:
        raise Http404(f"Snapshot {snapshot!r} of {vm.name} not found.")
    group = found[0]
    return _ask_then_run(
        request,
        tenant,
        action=action,
        target=f"vm/{vm.name}/snapshot/{group.name}",
        template="compute/vm_snapshot_confirm.html",
        context={
            "vm": vm,
            "group": group,
            "snapshot": group.disks[0],
            "size_gib": sum(d.size_gib for d in group.disks),
        },
        question=VM_SNAPSHOT_QUESTIONS[action].format(vm=vm.name, snapshot=group.name),
        back=_vm_detail(tenant, vm),
        restore=(
            lambda confirm: snapshot_services.vm_snapshot_restore(
                actor=request.user, vm=vm, name=group.name, confirm=confirm
            ),
            gettext("Restoring %(vm)s's disks from snapshot %(snapshot)s.")
            % {"vm": vm.name, "snapshot": group.name},
        ),
        delete=(
            lambda: snapshot_services.vm_snapshot_delete(
                actor=request.user, vm=vm, name=group.name
            ),
            gettext("Deleting snapshot %(snapshot)s of %(vm)s.")
            % {"snapshot": group.name, "vm": vm.name},
        ),
    )


# --- Snapshot schedules (the volume page and the VM page) --------------------------------
def _schedule(request, tenant, owner, kind: str, back: str):
    """Save (or, with ``remove``, remove) ``owner``'s snapshot schedule; the result as a
    message on the page it came from."""
    from compute.models import SnapshotSchedule

    if request.POST.get("remove"):
        current = SnapshotSchedule.objects.filter(**{kind: owner}).first()
        if current is None:
            messages.info(
                request, gettext("%(name)s has no snapshot schedule.") % {"name": owner.name}
            )
        else:
            _report(
                request,
                lambda: schedule_services.snapshot_schedule_delete(
                    actor=request.user, schedule=current
                ),
                gettext("Snapshot schedule of %(name)s removed; its snapshots are kept.")
                % {"name": owner.name},
            )
        return redirect(back)
    daily = request.POST.get("mode") == "daily"
    _report(
        request,
        lambda: schedule_services.snapshot_schedule_set(
            actor=request.user,
            **{kind: owner},
            interval_hours=None if daily else request.POST.get("interval_hours"),
            daily_at=request.POST.get("daily_at") if daily else None,
            keep=request.POST.get("keep"),
            enabled=bool(request.POST.get("enabled")),
        ),
        gettext("Snapshot schedule of %(name)s saved.") % {"name": owner.name},
    )
    return redirect(back)


@tenant_view("snapshot.schedule")
@require_POST
def volume_snapshot_schedule(request, tenant, name: str):
    volume = _volume_or_404(request, tenant, name)
    return _schedule(request, tenant, volume, "volume", f"{_detail(tenant, volume)}#schedule")


@tenant_view("snapshot.schedule")
@require_POST
def vm_snapshot_schedule(request, tenant, name: str):
    vm = _vm_or_404(request, tenant, name)
    back = reverse("vm-detail", kwargs={"tenant": tenant.slug, "name": vm.name}) + "#schedule"
    return _schedule(request, tenant, vm, "vm", back)


# --- Clone a whole VM (the VM page) ------------------------------------------------------
@tenant_view("vm.create")
@require_POST
def vm_clone(request, tenant, name: str):
    """The VM page's "Clone" forms (of its current disks, or of one of its snapshots, at
    the same size or another): on success, the new VM's page."""
    vm = _vm_or_404(request, tenant, name)
    new_name = request.POST.get("name", "").strip()
    snapshot = request.POST.get("snapshot", "").strip() or None
    done = (
        gettext("Cloning %(vm)s into %(name)s from snapshot %(snapshot)s.")
        % {"vm": vm.name, "name": new_name, "snapshot": snapshot}
        if snapshot
        else gettext("Cloning %(vm)s into %(name)s: its disks are being copied.")
        % {"vm": vm.name, "name": new_name}
    )
    if _report(
        request,
        lambda: clone_services.vm_clone(
            actor=request.user,
            vm=vm,
            name=new_name,
            start=bool(request.POST.get("start")),
            snapshot=snapshot,
            flavor=request.POST.get("flavor", "").strip() or None,
            vcpus=request.POST.get("vcpus", "").strip() or None,
            memory_mib=request.POST.get("memory_mib", "").strip() or None,
            disk_gib=request.POST.get("disk_gib", "").strip() or None,
        ),
        done,
    ):
        return redirect("vm-detail", tenant=tenant.slug, name=new_name)
    return redirect(
        reverse("vm-detail", kwargs={"tenant": tenant.slug, "name": vm.name}) + "#clone"
    )
