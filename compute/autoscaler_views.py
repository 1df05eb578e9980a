"""The tenant's autoscalers page: every autoscaler (of VM pools and of Deployments) in
one table, and the create form whose target picker lists both kinds.

Thin, like the pool pages: selectors read, ``compute.services.autoscalers`` creates
(the same ``autoscaler_create`` as the pool and Deployment panels and the API).
"""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods

from compute import selectors
from compute.pool_forms import AutoscalerCreateForm
from compute.services import autoscalers as autoscaler_services
from monitoring import live
from portal.exceptions import NotFound
from portal.web import form_service_call, tenant_view
from tenants import selectors as tenant_selectors


@tenant_view("vmpool.view")
@require_GET
def autoscaler_list(request, tenant):
    autoscalers = list(
        selectors.autoscalers_for_tenant(request.user, tenant).select_related("pool", "workload")
    )
    return render(
        request,
        "compute/autoscaler_list.html",
        {
            "tenant": tenant,
            "autoscalers": autoscalers,
            "can_create": tenant_selectors.can(request.user, tenant, "autoscaler.manage"),
            "live_baseline": live.page_baseline(tenant),
        },
    )


def _target_kwargs(request, tenant, target) -> dict:
    """The service's ``pool=`` or ``workload=`` for the picked target, read through
    the same selectors as the API (``NotFound`` when it went away meanwhile)."""
    if target.kind == "Deployment":
        return {"workload": selectors.workload_get(request.user, tenant, target.name)}
    return {"pool": selectors.pool_get(request.user, tenant, target.name)}


@tenant_view("autoscaler.manage")
@require_http_methods(["GET", "POST"])
def autoscaler_create(request, tenant):
    targets = selectors.autoscaler_targets(request.user, tenant)
    form = AutoscalerCreateForm(request.POST or None, targets=targets)
    if request.method == "POST" and form.is_valid():

        def create():
            try:
                target = _target_kwargs(request, tenant, form.target())
            except NotFound as error:
                error.errors = {"scale_target": [error.message]}
                raise
            return autoscaler_services.autoscaler_create(
                actor=request.user, tenant=tenant, **target, **form.service_kwargs()
            )

        autoscaler = form_service_call(form, create)
        if autoscaler is not None:
            messages.success(
                request,
                gettext("The autoscaler of %(name)s is saved.") % {"name": autoscaler.target_name},
            )
            return redirect("autoscaler-list", tenant=tenant.slug)
    return render(
        request,
        "compute/autoscaler_form.html",
        {
            "tenant": tenant,
            "form": form,
            "free_targets": any(not t.autoscaler for t in targets),
        },
        status=400 if form.errors else 200,
    )
