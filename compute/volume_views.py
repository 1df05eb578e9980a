"""Pages for volumes (``/t/<tenant>/volumes/...``) and the VM page's attach form.

Thin: ``tenant_view`` resolves the tenant (404 for non-members, 403 for the role),
selectors read, ``compute.services.volumes`` writes and decides; refusals become
messages or field errors. Destructive actions (detach, delete) are confirmed: in a
modal with JavaScript, on a confirmation page without.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compute import selectors
from compute.choices import ImageKind, SnapshotPhase
from compute.listing import PER_PAGE, list_page, search_apply, search_query
from compute.services import snapshots as snapshot_services
from compute.services import volumes as volume_services
from compute.volume_forms import VolumeAttachForm, VolumeCreateForm, VolumeResizeForm
from monitoring import live
from portal.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from portal.web import form_service_call, tenant_view
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.permissions import role_allows

CONFIRM = {
    "detach": _(
        "Detach {name} from {vm}? A running guest loses the disk at once: unmount "
        "it in the guest first."
    ),
    "delete": _("Delete {name}? Its data is removed and this cannot be undone."),
}
ACTION_LABELS = {
    "attach": (_("Attach"), "link-45deg", "primary"),
    "detach": (_("Detach"), "eject", "warning"),
    "resize": (_("Grow"), "arrows-angle-expand", "secondary"),
    "delete": (_("Delete"), "trash", "danger"),
}


def _volume_or_404(request, tenant, name: str):
    try:
        return selectors.volume_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _vm_or_404(request, tenant, name: str):
    try:
        return selectors.vm_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _storage_left(tenant) -> object:
    return next(u for u in tenant_selectors.quota_usage(tenant) if u.resource == "storage")


def _buttons(volume, role: str | None) -> list[dict]:
    """Detach and delete buttons (the others are forms on the detail page), hidden
    unless the phase allows them, so live updates can show them."""
    allowed = volume_services.allowed_actions(volume, role)
    vm = volume.vm.name if volume.vm_id else "its VM"
    return [
        {
            "action": action,
            "label": ACTION_LABELS[action][0],
            "icon": ACTION_LABELS[action][1],
            "tone": ACTION_LABELS[action][2],
            "confirm": CONFIRM[action].format(name=volume.name, vm=vm),
            "hidden": action not in allowed,
        }
        for action in ("detach", "delete")
        if role_allows(role, volume_services.ACTIONS[action].permission)
    ]


@tenant_view("volume.view")
@require_GET
def volume_list(request, tenant):
    """The tenant's volumes by name, a page at a time (``?page=&per_page=``), searched
    by name (``?q=``): a tenant with 10,000 VMs has 10,000 root disks."""
    baseline = live.page_baseline(tenant)
    query = search_query(request.GET)
    counts = selectors.volume_phase_counts(request.user, tenant)
    total = sum(c.count for c in counts)
    # Without a search the page counts every volume: the phase counts' sum.
    page = list_page(
        search_apply(selectors.volume_list_rows(request.user, tenant), query),
        request.GET.get("page"),
        query.per_page,
        count=total if not query.active else None,
    )
    volumes = list(page.object_list)
    for volume in volumes:
        volume.buttons = _buttons(volume, request.role)
    return render(
        request,
        "compute/volume_list.html",
        {
            "tenant": tenant,
            "page": page,
            "volumes": volumes,
            "any_volumes": bool(counts),
            "query": query,
            "counts": counts,
            "counts_total": total,
            "storage": _storage_left(tenant),
            "show_host": request.user.is_staff,
            "can_create": tenant_selectors.can(request.user, tenant, "volume.create"),
            "live_baseline": baseline,
            "per_page_min": PER_PAGE[0],
        },
        status=400 if query.errors else 200,
    )


@tenant_view("volume.create")
@require_http_methods(["GET", "POST"])
def volume_create(request, tenant):
    images = selectors.images_for_tenant(tenant).filter(kind=ImageKind.DISK)
    vms = selectors.vms_for_tenant(request.user, tenant).filter(
        phase__in=volume_services.ATTACHABLE_VM_PHASES
    )
    initial = {"vm": request.GET.get("vm", "")}
    form = VolumeCreateForm(request.POST or None, images=images, vms=vms, initial=initial)
    if request.method == "POST" and form.is_valid():
        volume = form_service_call(
            form,
            lambda: volume_services.volume_create(
                actor=request.user, tenant=tenant, **form.service_kwargs()
            ),
        )
        if volume is not None:
            messages.success(
                request,
                gettext("%(name)s accepted: its storage is being made.") % {"name": volume.name},
            )
            return redirect("volume-detail", tenant=tenant.slug, name=volume.name)
    return render(
        request,
        "compute/volume_form.html",
        {
            "tenant": tenant,
            "form": form,
            "storage": _storage_left(tenant),
            "usage_list": [
                u for u in tenant_selectors.quota_usage(tenant) if u.resource == "storage"
            ],
        },
        status=400 if form.errors else 200,
    )


@tenant_view("volume.view")
@require_GET
def volume_detail(request, tenant, name: str):
    baseline = live.page_baseline(tenant)
    volume = _volume_or_404(request, tenant, name)
    attach_to = []
    if volume.local and volume.vm_id is None:
        attach_to = [
            vm
            for vm in selectors.vms_for_tenant(request.user, tenant).filter(
                host_id=volume.host_id, phase__in=volume_services.ATTACHABLE_VM_PHASES
            )
        ]
    from monitoring import selectors as monitoring_selectors

    snapshots = list(selectors.snapshots_for_volume(request.user, volume)) if volume.local else []
    events = list(
        monitoring_selectors.events_visible(request.user, tenant).filter(
            kind="volume", name=volume.name
        )[:15]
    )
    return render(
        request,
        "compute/volume_detail.html",
        {
            "tenant": tenant,
            "volume": volume,
            "buttons": _buttons(volume, request.role),
            "actions": volume_services.allowed_actions(volume, request.role),
            "can_attach": tenant_selectors.can(request.user, tenant, "volume.attach"),
            "can_resize": tenant_selectors.can(request.user, tenant, "volume.resize"),
            "attach_to": attach_to,
            "users": volume_services.claim_users(volume) if not volume.local else [],
            "storage": _storage_left(tenant),
            "show_host": request.user.is_staff,
            "events": events,
            "live_baseline": baseline,
            "snapshots": [
                (s, snapshot_services.snapshot_actions(s, request.role)) for s in snapshots
            ],
            "ready_snapshots": [s for s in snapshots if s.phase == SnapshotPhase.READY],
            "can_snapshot": tenant_selectors.can(request.user, tenant, "snapshot.create"),
            "can_clone": tenant_selectors.can(request.user, tenant, "volume.clone"),
        },
    )


@tenant_view("volume.view")
@require_http_methods(["GET", "POST"])
def volume_action(request, tenant, name: str, action: str):
    """POST runs ``action``; GET (or a POST of detach/delete without ``confirm``) shows a
    confirmation page, so nothing is detached or deleted by a stray click."""
    volume = _volume_or_404(request, tenant, name)
    rule = volume_services.ACTIONS[action]
    try:
        tenant_services.authorize(
            actor=request.user,
            tenant=tenant,
            permission=rule.permission,
            target=f"volume/{volume.name}",
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    back = _back_to(request, tenant, volume)
    label, icon, tone = ACTION_LABELS[action]
    if request.method == "GET" or (action in CONFIRM and request.POST.get("confirm") != "yes"):
        vm = volume.vm.name if volume.vm_id else "its VM"
        return render(
            request,
            "compute/volume_confirm.html",
            {
                "tenant": tenant,
                "volume": volume,
                "action": action,
                "label": label,
                "icon": icon,
                "tone": tone,
                "question": CONFIRM.get(action, f"{label} {volume.name}?").format(
                    name=volume.name, vm=vm
                ),
                "back": back,
                "storage": _storage_left(tenant),
                "attach_to": selectors.vms_for_tenant(request.user, tenant).filter(
                    host_id=volume.host_id, phase__in=volume_services.ATTACHABLE_VM_PHASES
                )
                if action == "attach"
                else [],
            },
        )
    try:
        if action == "attach":
            form = VolumeAttachForm(request.POST)
            form.is_valid()
            vm = _vm_or_404(request, tenant, form.cleaned_data.get("vm") or "")
            volume_services.volume_attach(
                actor=request.user,
                volume=volume,
                vm=vm,
                device=form.cleaned_data.get("device") or "",
            )
            done = gettext("Attaching %(name)s to %(name2)s.") % {
                "name": volume.name,
                "name2": vm.name,
            }
        elif action == "resize":
            form = VolumeResizeForm(request.POST)
            form.is_valid()
            size = form.cleaned_data.get("size_gib")
            volume_services.volume_resize(actor=request.user, volume=volume, size_gib=size)
            done = gettext("Growing %(name)s to %(size)s GiB.") % {
                "name": volume.name,
                "size": size,
            }
        elif action == "detach":
            volume_services.volume_detach(actor=request.user, volume=volume)
            done = gettext("Detaching %(name)s.") % {"name": volume.name}
        else:
            volume_services.volume_delete(actor=request.user, volume=volume)
            messages.success(request, gettext("Deleting %(name)s.") % {"name": volume.name})
            return redirect("volume-list", tenant=tenant.slug)
    except Conflict as error:
        messages.warning(request, error.message)
    except ApplicationError as error:
        messages.error(request, _with_fields(error))
    else:
        messages.success(request, done)
    return redirect(back)


@tenant_view("volume.attach")
@require_POST
def vm_volume_attach(request, tenant, name: str):
    """The VM page's "Attach a volume" form."""
    vm = _vm_or_404(request, tenant, name)
    form = VolumeAttachForm(request.POST)
    form.is_valid()
    back = reverse("vm-detail", kwargs={"tenant": tenant.slug, "name": vm.name})
    volume_name = form.cleaned_data.get("volume") or ""
    try:
        volume = selectors.volume_get(request.user, tenant, volume_name)
        volume_services.volume_attach(
            actor=request.user, volume=volume, vm=vm, device=form.cleaned_data.get("device") or ""
        )
    except NotFound:
        messages.error(
            request,
            gettext("No volume named %(volume_name)s in %(name)s.")
            % {"volume_name": repr(volume_name), "name": tenant.name},
        )
    except Conflict as error:
        messages.warning(request, error.message)
    except ApplicationError as error:
        messages.error(request, _with_fields(error))
    else:
        messages.success(
            request,
            gettext("Attaching %(name)s to %(name2)s.") % {"name": volume.name, "name2": vm.name},
        )
    return redirect(f"{back}#volumes")


def _with_fields(error: ApplicationError) -> str:
    details = [m for messages_ in error.errors.values() for m in messages_]
    if details and details[0] != error.message:
        return f"{error.message} {' '.join(details)}"
    return error.message


def _back_to(request, tenant, volume) -> str:
    """Where to return after an action: the page it was sent from, if it is ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("volume-detail", kwargs={"tenant": tenant.slug, "name": volume.name})
