"""Pages for virtual machines and container workloads.

Thin: ``tenant_view`` resolves the tenant (404 for non-members, 403 for the role),
selectors read, ``compute.services.vms`` writes and decides; refusals become messages
or field errors.
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
from compute.bulk import BulkAction, bulk_view
from compute.choices import Phase, StorageClass, VolumePhase
from compute.forms import LabelsForm, VMCreateForm
from compute.labels import labels_text
from compute.listing import PER_PAGE, list_apply, list_page, list_query
from compute.services import vms as vm_services
from monitoring import live
from monitoring import selectors as monitoring_selectors
from portal.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from portal.web import form_service_call, tenant_view
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.choices import Confirmation
from tenants.permissions import role_allows

# Actions that cannot be undone or lose guest state: confirmed before they are sent.
CONFIRM = {
    "delete": _("Delete {name}? Its disk is removed and this cannot be undone."),
    "force-stop": _("Power off {name} at once? Unsaved data in the guest is lost."),
    "reboot": _("Reboot {name}? The guest restarts; unsaved work in it is lost."),
}
# The confirmations a user may turn off ("Don't ask again", or on the profile page);
# deleting always asks.
SKIPPABLE = {"force-stop": Confirmation.VM_FORCE_STOP, "reboot": Confirmation.VM_REBOOT}
# Shown with their label in the list; the others are icon buttons there (named by aria-label).
PRIMARY = frozenset({"start", "stop", "resume"})
ACTION_LABELS = {
    "start": (_("Start"), "play-fill", "success"),
    "stop": (_("Stop"), "stop-fill", "secondary"),
    "force-stop": (_("Force stop"), "power", "warning"),
    "pause": (_("Pause"), "pause-fill", "secondary"),
    "resume": (_("Resume"), "play-fill", "success"),
    "reboot": (_("Reboot"), "arrow-repeat", "secondary"),
    "delete": (_("Delete"), "trash", "danger"),
}


def _vm_or_404(request, tenant, name: str):
    try:
        return selectors.vm_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _asks(action: str, skipped: frozenset[str]) -> bool:
    """Whether ``action`` is confirmed first for a user who turned off ``skipped``."""
    return action in CONFIRM and SKIPPABLE.get(action) not in skipped


def _button_specs(role: str | None, skipped: frozenset[str] = frozenset()) -> list[tuple]:
    """What the buttons of every VM share, for ``role``, in the reader's language: each
    action the role may ever take with its label, its confirmation (a ``{name}``
    template, "" when it does not ask) and its skippable preference. Built once per
    page; translating them per row was a tenth of the VM list's CPU (bench/pages.py)."""
    return [
        (
            action,
            str(ACTION_LABELS[action][0]),
            str(CONFIRM[action]) if _asks(action, skipped) else "",
            SKIPPABLE.get(action, ""),
        )
        for action, rule in vm_services.ACTIONS.items()
        if role_allows(role, rule.permission)
    ]


def _buttons(
    vm, role: str | None, skipped: frozenset[str] = frozenset(), specs: list | None = None
) -> list[dict]:
    """The action buttons of ``vm`` for ``role`` (their icon, tone and markup are drawn by
    ``compute_tags.vm_actions``): every action the role may ever take,
    ``hidden`` unless the current phase allows it (``allowed_actions`` decides), so live
    updates can show and hide them as the phase changes. A viewer gets none. ``skipped``
    are the confirmations the user turned off; ``specs`` (``_button_specs``) when a page
    draws many VMs."""
    allowed = vm_services.allowed_actions(vm, role)
    return [
        {
            "action": action,
            "label": label,
            "confirm": confirm.format(name=vm.name) if confirm else "",
            "skippable": skippable,
            "hidden": action not in allowed,
        }
        for action, label, confirm, skippable in (
            _button_specs(role, skipped) if specs is None else specs
        )
    ]


@tenant_view("vm.view")
@require_http_methods(["GET", "POST"])
def vm_list(request, tenant):
    """The tenant's VMs; a POST is a bulk action on the ticked ones (``_vm_bulk``)."""
    if request.method == "POST":
        return _vm_bulk(request, tenant)
    baseline = live.page_baseline(tenant)  # read before the query (tenant_view)
    hosts = selectors.host_names() if request.user.is_staff else None
    query = list_query(request.GET, phases=Phase.values, hosts=hosts)
    everything = selectors.vm_list_rows(request.user, tenant)
    counts = selectors.vm_phase_counts(request.user, tenant)
    # Rows per page: query.per_page (the API pages separately, with limit/offset). Without
    # a search or filter the page counts every VM: the phase counts' sum.
    page = list_page(
        list_apply(everything, query),
        request.GET.get("page"),
        query.per_page,
        count=None if query.active else sum(c.count for c in counts),
    )
    vms = selectors.tenant_rows(list(page.object_list), tenant)
    skipped = tenant_selectors.confirmations_skipped(
        request.user, getattr(request, "portal_preference", tenant_selectors.UNREAD)
    )
    specs = _button_specs(request.role, skipped)
    for vm in vms:
        vm.buttons = _buttons(vm, request.role, specs=specs)
    return render(
        request,
        "compute/vm_list.html",
        {
            "page": page,
            "tenant": tenant,
            "vms": vms,
            "any_vms": bool(counts),
            "query": query,
            "phases": Phase.values,
            "hosts": hosts,
            "counts": counts,
            "counts_total": sum(c.count for c in counts),
            "show_host": request.user.is_staff,
            "can_create": tenant_selectors.can(request.user, tenant, "vm.create"),
            "live_baseline": baseline,
            "per_page_min": PER_PAGE[0],
        },
        status=400 if query.errors else 200,
    )


@tenant_view("vm.create")
@require_http_methods(["GET", "POST"])
def vm_create(request, tenant):
    images = selectors.images_for_tenant(tenant)
    # ?image=<name> (the Images page's "VM" button) preselects that image, the tenant's own first.
    chosen = images.filter(name=request.GET.get("image", "")).order_by("public").first()
    volumes = selectors.volumes_for_tenant(request.user, tenant).filter(
        vm__isnull=True, phase=VolumePhase.READY, storage_class=StorageClass.LOCAL
    )
    form = VMCreateForm(
        request.POST or None,
        images=images,
        flavors=selectors.flavors(),
        volumes=volumes,
        networks=selectors.networks_for_tenant(request.user, tenant).filter(phase="Ready"),
        initial={"image": chosen.pk} if chosen else None,
    )
    if request.method == "POST" and form.is_valid():
        vm = form_service_call(
            form,
            lambda: vm_services.vm_create(
                actor=request.user, tenant=tenant, **form.service_kwargs()
            ),
        )
        if vm is not None:
            messages.success(
                request, gettext("%(name)s accepted: it is being provisioned.") % {"name": vm.name}
            )
            return redirect("vm-detail", tenant=tenant.slug, name=vm.name)
    usage = tenant_selectors.quota_usage(tenant)
    return render(
        request,
        "compute/vm_form.html",
        {
            "tenant": tenant,
            "form": form,
            "usage": {u.resource: u for u in usage},
            "usage_list": [u for u in usage if u.resource not in ("pods", "networks")],
            "flavors": list(form.flavors.values()),
            "has_images": images.exists(),
        },
        status=400 if form.errors else 200,
    )


@tenant_view("vm.view")
@require_GET
def vm_detail(request, tenant, name: str):
    return _detail(request, tenant, _vm_or_404(request, tenant, name))


def _detail(request, tenant, vm, labels_form: LabelsForm | None = None, status: int = 200):
    """The VM's page; ``labels_form`` is a refused "Edit labels" form to show again."""
    baseline = live.page_baseline(tenant)
    if labels_form is None and tenant_selectors.can(request.user, tenant, "vm.update"):
        labels_form = LabelsForm.for_labels(vm.labels)
    return render(
        request,
        "compute/vm_detail.html",
        {
            "tenant": tenant,
            "vm": vm,
            "buttons": _buttons(
                vm, request.role, tenant_selectors.confirmations_skipped(request.user)
            ),
            "show_host": request.user.is_staff,
            "can_clone": tenant_selectors.can(request.user, tenant, "vm.create"),
            "labels_form": labels_form,
            "events": monitoring_selectors.events_of_object(
                request.user, tenant, kind="vm", name=vm.name
            ),
            "live_baseline": baseline,
        },
        status=status,
    )


@tenant_view("vm.update")
@require_POST
def vm_labels(request, tenant, name: str):
    """The VM page's "Edit labels" form: the lines given replace the VM's labels (the
    Services that select by them follow). A refusal shows the page again with the lines
    as typed and the reason on the field, and changes nothing."""
    vm = _vm_or_404(request, tenant, name)
    form = relabel_from_form(
        request,
        lambda labels, shown: vm_services.vm_relabel(
            actor=request.user, vm=vm, labels=labels, shown=shown
        ),
    )
    if form is None:
        return redirect("vm-detail", tenant=tenant.slug, name=vm.name)
    return _detail(request, tenant, vm, form, status=400)


def relabel_from_form(request, relabel) -> LabelsForm | None:
    """Run an "Edit labels" post through ``relabel(labels, shown)`` (a service that
    returns the object; ``shown``: the labels the page showed). None when it changed (a
    message says so); else the form, with the reason on its field."""
    form = LabelsForm(request.POST)
    if not form.is_valid():
        return form
    try:
        changed = relabel(form.cleaned_data["labels"], form.cleaned_data["shown"])
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    except ApplicationError as error:
        reasons = [m for ms in (error.errors or {}).values() for m in ms]
        form.add_error("labels", reasons or [error.message])
        return form
    messages.success(
        request,
        gettext("The labels of %(name)s are now: %(labels)s.")
        % {"name": changed.name, "labels": labels_text(changed.labels) or gettext("none")},
    )
    return None


@tenant_view("vm.view")
@require_http_methods(["GET", "POST"])
def vm_action(request, tenant, name: str, action: str):
    """POST runs ``action``; GET (or a POST without ``confirm`` for a destructive action)
    shows a confirmation page, so no click removes a VM by accident, with or without JS."""
    if action not in vm_services.ACTIONS:
        raise Http404("Unknown action.")
    vm = _vm_or_404(request, tenant, name)
    rule = vm_services.ACTIONS[action]
    try:
        tenant_services.authorize(
            actor=request.user, tenant=tenant, permission=rule.permission, target=f"vm/{vm.name}"
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    back = _back(request, tenant, vm)
    skipped = tenant_selectors.confirmations_skipped(request.user)
    confirmed = request.POST.get("confirm") == "yes"
    if request.method == "GET" or (_asks(action, skipped) and not confirmed):
        label, icon, tone = ACTION_LABELS[action]
        return render(
            request,
            "compute/vm_confirm.html",
            {
                "tenant": tenant,
                "vm": vm,
                "action": action,
                "label": label,
                "icon": icon,
                "tone": tone,
                "question": CONFIRM.get(action, f"{label} {vm.name}?").format(name=vm.name),
                "skippable": SKIPPABLE.get(action, ""),
                "back": back,
            },
        )
    if confirmed and action in SKIPPABLE and request.POST.get("dont_ask_again") == "1":
        tenant_services.preference_set_confirmation(
            user=request.user, confirmation=SKIPPABLE[action], ask=False
        )
    try:
        vm_services.vm_action(actor=request.user, vm=vm, action=action)
    except Conflict as error:
        messages.warning(request, error.message)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request,
            gettext("%(action)s requested for %(name)s.")
            % {"action": ACTION_LABELS[action][0], "name": vm.name},
        )
        if action == "delete":
            return redirect("vm-list", tenant=tenant.slug)
    return redirect(back)


# Actions the VM list offers on several VMs at once (compute.bulk).
BULK_ACTIONS = {
    action: BulkAction(vm_services.ACTIONS[action].permission, *ACTION_LABELS[action])
    for action in ("start", "stop", "delete")
}


def _vm_bulk(request, tenant):
    """Start, stop or delete the ticked VMs: one confirmation, then ``vm_action`` each."""
    return bulk_view(
        request,
        tenant,
        actions=BULK_ACTIONS,
        visible=selectors.vms_for_tenant(request.user, tenant),
        run=lambda vm, action: vm_services.vm_action(actor=request.user, vm=vm, action=action),
        noun="VM",
        back=reverse("vm-list", kwargs={"tenant": tenant.slug}),
    )


def _back(request, tenant, vm) -> str:
    """Where to return after an action: the page it was sent from, if it is ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("vm-detail", kwargs={"tenant": tenant.slug, "name": vm.name})
