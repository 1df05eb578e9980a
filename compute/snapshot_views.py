"""Pages for volume snapshots and clones: the Snapshots panel's take, restore and
delete, and the Clone form, all on the volume page.

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
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from compute import selectors
from compute.services import snapshots as snapshot_services
from compute.volume_views import _volume_or_404, _with_fields
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
        f"Taking snapshot {snapshot_name.strip()} of {volume.name}.",
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
    permission = snapshot_services.SNAPSHOT_ACTIONS[action][0]
    try:
        tenant_services.authorize(
            actor=request.user,
            tenant=tenant,
            permission=permission,
            target=f"volume/{volume.name}/snapshot/{found.name}",
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    back = f"{_detail(tenant, volume)}#snapshots"
    label, icon, tone, question = SNAPSHOT_ACTIONS[action]
    confirm = request.POST.get("confirm", "")
    asked = confirm == "yes" if action == "delete" else bool(confirm)
    if request.method == "GET" or not asked:
        return render(
            request,
            "compute/snapshot_confirm.html",
            {
                "tenant": tenant,
                "volume": volume,
                "snapshot": found,
                "action": action,
                "label": label,
                "icon": icon,
                "tone": tone,
                "question": question.format(volume=volume.name, snapshot=found.name),
                "back": back,
            },
        )
    if action == "restore":
        ok = _report(
            request,
            lambda: snapshot_services.snapshot_restore(
                actor=request.user, snapshot=found, confirm=confirm
            ),
            f"Restoring {volume.name} from snapshot {found.name}.",
        )
        if not ok and "confirm" in request.POST:
            return redirect(request.path)
    else:
        _report(
            request,
            lambda: snapshot_services.snapshot_delete(actor=request.user, snapshot=found),
            f"Deleting snapshot {found.name}.",
        )
    return redirect(back)


@tenant_view("volume.clone")
@require_POST
def volume_clone(request, tenant, name: str):
    """The volume page's "Clone" form: on success, the new volume's page."""
    volume = _volume_or_404(request, tenant, name)
    new_name = request.POST.get("name", "").strip()
    if _report(
        request,
        lambda: snapshot_services.volume_clone(actor=request.user, volume=volume, name=new_name),
        f"Cloning {volume.name} into {new_name}.",
    ):
        return redirect("volume-detail", tenant=tenant.slug, name=new_name)
    return redirect(f"{_detail(tenant, volume)}#clone")
