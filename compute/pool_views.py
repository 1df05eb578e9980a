"""Pages for VM pools: list, create form, detail (members, scale, autoscaler), delete.

Thin, like the VM pages: ``tenant_view`` resolves the tenant and role, selectors read,
``compute.services.pools`` and ``compute.services.autoscalers`` write and decide;
refusals become messages or field errors.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compute import selectors
from compute.pool_forms import AutoscalerPanelForm, PoolCreateForm, PoolTemplateForm
from compute.services import autoscalers as autoscaler_services
from compute.services import pools as pool_services
from monitoring import live
from portal.exceptions import ApplicationError, NotFound, PermissionDenied
from portal.web import form_service_call, tenant_view
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services

DELETE_QUESTION = _(
    "Delete %(name)s and every one of its member VMs? Their disks are deleted too and this "
    "cannot be undone."
)

AUTOSCALER_REMOVED = _(
    "The autoscaler of %(name)s was removed by someone else since you opened this page; "
    "reload to see the change. Nothing was saved."
)
AUTOSCALER_ADDED = _(
    "%(name)s was given an autoscaler by someone else since you opened this page; reload "
    "to see it. Nothing was saved."
)


def _pool_or_404(request, tenant, name: str):
    try:
        return selectors.pool_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _require(request, tenant, permission: str, target: str) -> None:
    try:
        tenant_services.authorize(
            actor=request.user, tenant=tenant, permission=permission, target=target
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None


@tenant_view("vmpool.view")
@require_GET
def pool_list(request, tenant):
    pools = list(selectors.pools_for_tenant(request.user, tenant))
    return render(
        request,
        "compute/pool_list.html",
        {
            "tenant": tenant,
            "pools": pools,
            "can_create": tenant_selectors.can(request.user, tenant, "vmpool.create"),
            "live_baseline": live.page_baseline(tenant),
        },
    )


@tenant_view("vmpool.create")
@require_http_methods(["GET", "POST"])
def pool_create(request, tenant):
    form = PoolCreateForm(request.POST or None, images=selectors.images_for_tenant(tenant))
    if request.method == "POST" and form.is_valid():
        pool = form_service_call(
            form,
            lambda: pool_services.pool_create(
                actor=request.user, tenant=tenant, **form.service_kwargs()
            ),
        )
        if pool is not None:
            messages.success(
                request,
                gettext("%(name)s accepted: its members are being created.") % {"name": pool.name},
            )
            return redirect("vmpool-detail", tenant=tenant.slug, name=pool.name)
    usage = tenant_selectors.quota_usage(tenant)
    return render(
        request,
        "compute/pool_form.html",
        {
            "tenant": tenant,
            "form": form,
            "usage_list": [u for u in usage if u.resource in ("cpu", "memory", "storage", "vms")],
        },
        status=400 if form.errors else 200,
    )


@tenant_view("vmpool.view")
@require_GET
def pool_detail(request, tenant, name: str):
    from monitoring import selectors as monitoring_selectors

    baseline = live.page_baseline(tenant)
    pool = _pool_or_404(request, tenant, name)
    autoscaler = getattr(pool, "autoscaler", None)
    form = _autoscaler_form(request, tenant, autoscaler)
    return render(
        request,
        "compute/pool_detail.html",
        _detail_context(request, tenant, pool, autoscaler, form, baseline, monitoring_selectors),
    )


def _autoscaler_form(request, tenant, autoscaler):
    if not tenant_selectors.can(request.user, tenant, "autoscaler.manage"):
        return None
    return AutoscalerPanelForm.for_autoscaler(autoscaler)


def _template_form(request, tenant, pool, data=None):
    if not tenant_selectors.can(request.user, tenant, "vmpool.update"):
        return None
    initial = {field: getattr(pool, field) for field in PoolTemplateForm.FIELDS}
    return PoolTemplateForm(data, initial=initial, images=selectors.images_for_tenant(tenant))


def _detail_context(
    request, tenant, pool, autoscaler, form, baseline, monitoring_selectors, template_form=None
):
    events = monitoring_selectors.events_of_object(
        request.user, tenant, kind="vmpool", name=pool.name
    )
    return {
        "template_form": template_form or _template_form(request, tenant, pool),
        "can_update": tenant_selectors.can(request.user, tenant, "vmpool.update"),
        "updating": pool_services.pool_state(pool, [])["updating"],
        "tenant": tenant,
        "pool": pool,
        "members": list(selectors.pool_members(pool)),
        "autoscaler": autoscaler,
        "autoscaler_form": form,
        "can_scale": tenant_selectors.can(request.user, tenant, "vmpool.scale"),
        "can_delete": tenant_selectors.can(request.user, tenant, "vmpool.delete"),
        "delete_question": DELETE_QUESTION % {"name": pool.name},
        "events": events,
        "live_baseline": baseline,
    }


@tenant_view("vmpool.view")
@require_POST
def pool_scale(request, tenant, name: str):
    pool = _pool_or_404(request, tenant, name)
    _require(request, tenant, "vmpool.scale", f"vmpool/{pool.name}")
    replicas = request.POST.get("replicas", "")
    try:
        pool_services.pool_scale(actor=request.user, pool=pool, replicas=replicas)
    except ApplicationError as error:
        messages.error(request, _field_message(error, "replicas"))
    else:
        messages.success(
            request,
            gettext("Scaling %(name)s to %(replicas)s members.")
            % {"name": pool.name, "replicas": replicas},
        )
    return redirect("vmpool-detail", tenant=tenant.slug, name=pool.name)


@tenant_view("vmpool.view")
@require_POST
def pool_update(request, tenant, name: str):
    """The template form (a changed template is rolled out), or ``paused`` (1/0) from
    the pause and resume buttons."""
    from monitoring import selectors as monitoring_selectors

    pool = _pool_or_404(request, tenant, name)
    _require(request, tenant, "vmpool.update", f"vmpool/{pool.name}")
    if "paused" in request.POST:
        paused = request.POST["paused"] == "1"
        try:
            pool_services.pool_update(actor=request.user, pool=pool, paused=paused)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request,
                (
                    gettext("The update of %(name)s is paused.")
                    if paused
                    else gettext("The update of %(name)s goes on.")
                )
                % {"name": pool.name},
            )
        return redirect("vmpool-detail", tenant=tenant.slug, name=pool.name)
    form = _template_form(request, tenant, pool, request.POST)
    if form.is_valid():
        before = pool.template_generation
        saved = form_service_call(
            form,
            lambda: pool_services.pool_update(
                actor=request.user, pool=pool, **form.service_kwargs()
            ),
        )
        if saved is not None:
            messages.success(
                request,
                gettext("%(name)s: the new template is rolled out to its members.")
                % {"name": pool.name}
                if saved.template_generation != before
                else gettext("%(name)s is saved.") % {"name": pool.name},
            )
            return redirect("vmpool-detail", tenant=tenant.slug, name=pool.name)
    autoscaler = getattr(pool, "autoscaler", None)
    context = _detail_context(
        request,
        tenant,
        pool,
        autoscaler,
        _autoscaler_form(request, tenant, autoscaler),
        live.page_baseline(tenant),
        monitoring_selectors,
        template_form=form,
    )
    return render(request, "compute/pool_detail.html", context, status=400)


@tenant_view("vmpool.view")
@require_http_methods(["GET", "POST"])
def pool_delete(request, tenant, name: str):
    """POST with ``confirm=yes`` deletes; GET (or a POST without it) asks first."""
    pool = _pool_or_404(request, tenant, name)
    _require(request, tenant, "vmpool.delete", f"vmpool/{pool.name}")
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        return render(
            request,
            "compute/pool_confirm.html",
            {"tenant": tenant, "pool": pool, "question": DELETE_QUESTION % {"name": pool.name}},
        )
    try:
        pool_services.pool_delete(actor=request.user, pool=pool)
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("vmpool-detail", tenant=tenant.slug, name=pool.name)
    messages.success(request, gettext("Deleting %(name)s and its members.") % {"name": pool.name})
    return redirect("vmpool-list", tenant=tenant.slug)


def autoscaler_submit(
    request, tenant, form: AutoscalerPanelForm, autoscaler, name: str, **target
) -> bool:
    """The autoscaler panel's POST, a pool's or a Deployment's (``target``: ``pool=`` or
    ``workload=``): ``remove`` deletes it, otherwise the valid ``form`` creates or changes
    it; success is a message. True when done; False leaves the form's errors to show.

    What is created, changed or removed is the autoscaler the page showed: a page that
    showed none adds one (refused if one was added since), a page that showed one whose
    autoscaler was removed (or replaced) since changes nothing."""
    shown = form.shown()
    stale = None
    if shown is not None and shown != (str(autoscaler.uid) if autoscaler else ""):
        # A uid is never reused: the autoscaler the page showed is gone for good.
        stale = (AUTOSCALER_REMOVED if shown else AUTOSCALER_ADDED) % {"name": name}
    if request.POST.get("remove"):
        if stale:
            messages.error(request, stale)
        elif autoscaler is not None:
            autoscaler_services.autoscaler_delete(actor=request.user, autoscaler=autoscaler)
            messages.success(
                request, gettext("The autoscaler of %(name)s is removed.") % {"name": name}
            )
        return True
    if not form.is_valid():
        return False
    if stale:
        form.add_error(None, stale)
        return False
    if autoscaler is None:
        saved = form_service_call(
            form,
            lambda: autoscaler_services.autoscaler_create(
                actor=request.user, tenant=tenant, **target, **form.service_kwargs()
            ),
        )
    else:
        saved = form_service_call(
            form,
            lambda: autoscaler_services.autoscaler_update(
                actor=request.user, autoscaler=autoscaler, **form.change_kwargs()
            ),
        )
    if saved is None:
        return False
    messages.success(request, gettext("The autoscaler of %(name)s is saved.") % {"name": name})
    return True


@tenant_view("vmpool.view")
@require_POST
def pool_autoscaler(request, tenant, name: str):
    """Create, change (the form) or remove (``remove``) the pool's autoscaler."""
    from monitoring import selectors as monitoring_selectors

    pool = _pool_or_404(request, tenant, name)
    _require(request, tenant, "autoscaler.manage", f"vmpool/{pool.name}")
    autoscaler = getattr(pool, "autoscaler", None)
    form = AutoscalerPanelForm.for_autoscaler(autoscaler, request.POST)
    if autoscaler_submit(request, tenant, form, autoscaler, pool.name, pool=pool):
        return redirect("vmpool-detail", tenant=tenant.slug, name=pool.name)
    context = _detail_context(
        request, tenant, pool, autoscaler, form, live.page_baseline(tenant), monitoring_selectors
    )
    return render(request, "compute/pool_detail.html", context, status=400)


def _field_message(error: ApplicationError, field: str) -> str:
    return (error.errors.get(field) or [error.message])[0]
