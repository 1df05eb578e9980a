"""Pages for container workloads: list, create form, detail (pods, events), actions, logs.

Thin, like the VM pages: ``tenant_view`` resolves the tenant and role, selectors read,
``compute.services.workloads`` writes and decides; refusals become messages or field
errors.
"""

from __future__ import annotations

from csp.constants import SELF
from csp.decorators import csp_replace
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compute import selectors
from compute.backends.base import BackendError
from compute.backends.containers import LogsUnavailable
from compute.bulk import BulkAction, bulk_view
from compute.choices import Phase, StorageClass, WorkloadKind
from compute.forms import LabelsForm
from compute.listing import PER_PAGE, list_apply, list_page, list_query
from compute.pool_forms import AutoscalerPanelForm
from compute.pool_views import autoscaler_submit
from compute.services import clusters as cluster_services
from compute.services import workloads as workload_services
from compute.views import relabel_from_form
from compute.workload_forms import WorkloadCreateForm
from monitoring import live
from portal.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from portal.web import form_service_call, message_call, tenant_view
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.permissions import role_allows

CONFIRM = {
    "delete": _("Delete {name}? Its pods and service are removed and this cannot be undone."),
    "restart": _("Restart every pod of {name}, one at a time?"),
}
ACTION_LABELS = {
    "scale": (_("Scale"), "arrows-expand", "secondary"),
    "restart": (_("Restart"), "arrow-repeat", "secondary"),
    "delete": (_("Delete"), "trash", "danger"),
}


def _workload_or_404(request, tenant, name: str):
    try:
        return selectors.workload_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


# Actions the workload list offers on several workloads at once (compute.bulk); scaling
# needs a number per workload, so it stays on each row.
BULK_ACTIONS = {
    action: BulkAction(workload_services.ACTIONS[action].permission, *ACTION_LABELS[action])
    for action in ("restart", "delete")
}


def _buttons(workload, role: str | None, *, sized: bool) -> list[dict]:
    """Every action the role may take on this kind of workload, hidden unless allowed in
    the current phase (live updates show and hide them). A viewer gets none. Scale is
    hidden while an autoscaler sizes the Deployment (``sized``, from
    ``workload_services.sized_by``; the page points to the autoscaler instead) and
    shows, live, once it is at zero."""
    allowed = workload_services.allowed_actions(workload, role, sized=sized)
    return [
        {
            "action": action,
            "label": ACTION_LABELS[action][0],
            "icon": ACTION_LABELS[action][1],
            "tone": ACTION_LABELS[action][2],
            "confirm": CONFIRM[action].format(name=workload.name) if action in CONFIRM else "",
            "hidden": action not in allowed,
        }
        for action, rule in workload_services.ACTIONS.items()
        if role_allows(role, rule.permission) and workload.kind in rule.kinds
    ]


@tenant_view("workload.view")
@require_http_methods(["GET", "POST"])
def workload_list(request, tenant):
    """The tenant's workloads; a POST is a bulk action on the ticked ones."""
    if request.method == "POST":
        return bulk_view(
            request,
            tenant,
            actions=BULK_ACTIONS,
            visible=selectors.workloads_for_tenant(request.user, tenant),
            run=lambda workload, action: workload_services.workload_action(
                actor=request.user, workload=workload, action=action
            ),
            noun="workload",
            back=reverse("workload-list", kwargs={"tenant": tenant.slug}),
        )
    baseline = live.page_baseline(tenant)
    # Workloads run on clusters, not hosts: no host filter or sort here.
    query = list_query(request.GET, phases=Phase.values, hosts=None)
    counts = selectors.workload_phase_counts(request.user, tenant)
    # A page of query.per_page rows; without a search or filter the phase counts' sum is
    # the page count (no COUNT(*)).
    page = list_page(
        list_apply(selectors.workload_list_rows(request.user, tenant), query),
        request.GET.get("page"),
        query.per_page,
        count=None if query.active else sum(c.count for c in counts),
    )
    workloads = list(page.object_list)
    for workload in workloads:
        # Whether an autoscaler sizes it (no scale button): read with the page's rows.
        sized = workload_services.sized_by_autoscaler(workload)
        workload.buttons = _buttons(workload, request.role, sized=sized)
    return render(
        request,
        "compute/workload_list.html",
        {
            "tenant": tenant,
            "page": page,
            "workloads": workloads,
            "any_workloads": bool(counts),
            "query": query,
            "phases": Phase.values,
            "hosts": None,
            "counts": counts,
            "counts_total": sum(c.count for c in counts),
            "show_cluster": request.user.is_staff,
            "can_create": tenant_selectors.can(request.user, tenant, "workload.create"),
            "live_baseline": baseline,
            "per_page_min": PER_PAGE[0],
        },
        status=400 if query.errors else 200,
    )


@tenant_view("workload.create")
@require_http_methods(["GET", "POST"])
def workload_create(request, tenant):
    groups = selectors.security_groups_for_tenant(request.user, tenant)
    form = WorkloadCreateForm(request.POST or None, groups=[g.name for g in groups])
    if request.method == "POST" and form.is_valid():
        workload = form_service_call(
            form,
            lambda: workload_services.workload_create(
                actor=request.user, tenant=tenant, **form.service_kwargs()
            ),
        )
        if workload is not None:
            messages.success(
                request,
                gettext("%(name)s accepted: its pods are being created.") % {"name": workload.name},
            )
            return redirect("workload-detail", tenant=tenant.slug, name=workload.name)
    usage = tenant_selectors.quota_usage(tenant)
    return render(
        request,
        "compute/workload_form.html",
        {
            "tenant": tenant,
            "form": form,
            "usage": {u.resource: u for u in usage},
            "usage_list": [u for u in usage if u.resource in ("cpu", "memory", "pods")],
            "cluster": workload_services.default_cluster(),
            "claim_volumes": selectors.volumes_for_tenant(request.user, tenant).filter(
                storage_class=StorageClass.CLUSTER
            ),
        },
        status=400 if form.errors else 200,
    )


@tenant_view("workload.view")
@require_GET
def workload_detail(request, tenant, name: str):
    return _detail(request, tenant, _workload_or_404(request, tenant, name))


def _detail(
    request,
    tenant,
    workload,
    labels_form: LabelsForm | None = None,
    status: int = 200,
    autoscaler_form=None,
):
    """The workload's page; ``labels_form`` (``autoscaler_form``) is a refused "Edit
    labels" (autoscaler) form to show again."""
    from monitoring import selectors as monitoring_selectors

    baseline = live.page_baseline(tenant)
    events = monitoring_selectors.events_of_object(
        request.user, tenant, kind=workload_services.EVENT_KIND, name=workload.name
    )
    can_update = tenant_selectors.can(request.user, tenant, "workload.update")
    if labels_form is None and can_update:
        labels_form = LabelsForm.for_labels(workload.labels)
    groups = workload_services.workload_groups(workload)
    tenant_groups = list(selectors.security_groups_for_tenant(request.user, tenant))
    deployment = workload.kind == WorkloadKind.DEPLOYMENT
    autoscaler = workload_services.autoscaler_of(workload) if deployment else None
    sized = workload_services.sized_by(autoscaler is not None, workload.replicas)
    if deployment and autoscaler_form is None and not workload.deleting:
        autoscaler_form = _autoscaler_form(request, tenant, autoscaler)
    return render(
        request,
        "compute/workload_detail.html",
        {
            "tenant": tenant,
            "workload": workload,
            "buttons": _buttons(workload, request.role, sized=sized),
            "sized": sized,
            "show_cluster": request.user.is_staff,
            "labels_form": labels_form if not workload.deleting else None,
            "groups": groups,
            "known_groups": {g.name for g in tenant_groups},
            "group_choices": tenant_groups if can_update and not workload.deleting else None,
            "events": events,
            "live_baseline": baseline,
            "deployment": deployment,
            "autoscaler": autoscaler,
            "autoscaler_form": autoscaler_form,
            "autoscaler_chart_seconds": f"{settings.ISOTOPE_AUTOSCALER_CHART_SECONDS:g}",
        },
        status=status,
    )


def _autoscaler_form(request, tenant, autoscaler, data=None) -> AutoscalerPanelForm | None:
    """The pool page's autoscaler form for a Deployment."""
    if not tenant_selectors.can(request.user, tenant, "autoscaler.manage"):
        return None
    form = AutoscalerPanelForm.for_autoscaler(autoscaler, data)
    form.fields["min_replicas"].help_text = _(
        "0 lets an idle Deployment scale to zero (its HorizontalPodAutoscaler keeps 1; "
        "Isotope takes it from 1 to 0); scale it by hand to wake it."
    )
    form.fields["scale_up_pods"].label = _("Add at most (pods per 15 s)")
    return form


@tenant_view("workload.view")
@require_POST
def workload_autoscaler(request, tenant, name: str):
    """Create, change (the form) or remove (``remove``) the Deployment's autoscaler: a
    HorizontalPodAutoscaler in the tenant's namespace."""
    workload = _workload_or_404(request, tenant, name)
    try:
        tenant_services.authorize(
            actor=request.user,
            tenant=tenant,
            permission="autoscaler.manage",
            target=f"workload/{workload.name}",
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    autoscaler = workload_services.autoscaler_of(workload)
    form = _autoscaler_form(request, tenant, autoscaler, request.POST)
    if autoscaler_submit(request, tenant, form, autoscaler, workload.name, workload=workload):
        return redirect("workload-detail", tenant=tenant.slug, name=workload.name)
    return _detail(request, tenant, workload, autoscaler_form=form, status=400)


@tenant_view("workload.update")
@require_POST
def workload_labels(request, tenant, name: str):
    """The workload page's "Edit labels" form (a Deployment's pods roll to carry them;
    the Services that select by them follow). A refusal shows the page again with the
    lines as typed and the reason on the field, and changes nothing."""
    workload = _workload_or_404(request, tenant, name)
    form = relabel_from_form(
        request,
        lambda labels, shown: workload_services.workload_relabel(
            actor=request.user, workload=workload, labels=labels, shown=shown
        ),
    )
    if form is None:
        return redirect("workload-detail", tenant=tenant.slug, name=workload.name)
    return _detail(request, tenant, workload, form, status=400)


@tenant_view("workload.update")
@require_POST
def workload_groups(request, tenant, name: str):
    """The workload page's "Edit groups" form: the checked groups replace the ones its
    pods are in (a Deployment's pods roll to carry them). A refusal is the message and
    changes nothing."""
    workload = _workload_or_404(request, tenant, name)
    groups = list(dict.fromkeys(request.POST.getlist("security_groups")))
    message_call(
        request,
        lambda: workload_services.workload_groups_set(
            actor=request.user, workload=workload, groups=groups
        ),
        gettext("The pods of %(name)s are in %(groups)s now.")
        % {"name": workload.name, "groups": ", ".join(sorted(groups))},
    )
    return redirect("workload-detail", tenant=tenant.slug, name=workload.name)


@tenant_view("workload.view")
@require_http_methods(["GET", "POST"])
def workload_action(request, tenant, name: str, action: str):
    """POST runs ``action`` (scale takes ``replicas``); GET, or a POST without
    ``confirm`` for a confirmed action, shows a confirmation page first."""
    if action not in workload_services.ACTIONS:
        raise Http404("Unknown action.")
    workload = _workload_or_404(request, tenant, name)
    rule = workload_services.ACTIONS[action]
    try:
        tenant_services.authorize(
            actor=request.user,
            tenant=tenant,
            permission=rule.permission,
            target=f"workload/{workload.name}",
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None
    back = _back(request, tenant, workload)
    needs_confirm = action in CONFIRM and request.POST.get("confirm") != "yes"
    if request.method == "GET" or needs_confirm:
        label, icon, tone = ACTION_LABELS[action]
        return render(
            request,
            "compute/workload_confirm.html",
            {
                "tenant": tenant,
                "workload": workload,
                "action": action,
                "label": label,
                "icon": icon,
                "tone": tone,
                "question": CONFIRM.get(action, f"{label} {workload.name}?").format(
                    name=workload.name
                ),
                "back": back,
            },
        )
    kwargs = {"replicas": request.POST.get("replicas", "")} if action == "scale" else {}
    try:
        workload_services.workload_action(
            actor=request.user, workload=workload, action=action, **kwargs
        )
    except Conflict as error:
        messages.warning(request, error.message)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        done = {"scale": f"Scaling {workload.name} to {kwargs.get('replicas')} replicas."}
        messages.success(
            request, done.get(action, f"{ACTION_LABELS[action][0]} requested for {workload.name}.")
        )
        if action == "delete":
            return redirect("workload-list", tenant=tenant.slug)
    return redirect(back)


# The page frames its own ?follow=1 stream: same-origin framing of this view only.
@csp_replace({"frame-ancestors": [SELF]})
@tenant_view("workload.view")
@require_GET
@xframe_options_sameorigin
def workload_logs(request, tenant, name: str):
    """The pod's log: streamed as text when the cluster can (``?follow=1``, into the
    page's frame: framed by this site only), otherwise a page that says plainly why there
    is none (KWOK's fake nodes run no containers). A stream the node refuses says why
    in the frame, as text."""
    workload = _workload_or_404(request, tenant, name)
    pods = [p["name"] for p in workload.pods]
    pod = request.GET.get("pod") or (pods[0] if pods else "")
    if pod and pod not in pods:
        raise Http404("No such pod in this workload.")
    reason = ""
    if not workload.cluster.can("logs"):
        reason = (
            f"The nodes of cluster {workload.cluster.name} are KWOK fake nodes: no container "
            "runs on them, so there are no logs to show."
        )
    elif not pod:
        reason = "The workload has no pods yet."
    elif request.GET.get("follow"):
        backend = cluster_services.cluster_backend(workload.cluster)
        try:
            lines = backend.logs(workload.namespace, pod)
            first = next(lines, "")
        except (LogsUnavailable, BackendError) as error:
            # Shown in the page's frame: the reason alone, not a page in the page.
            return HttpResponse(
                gettext("No logs: %(reason)s") % {"reason": error},
                content_type="text/plain; charset=utf-8",
            )
        else:
            response = StreamingHttpResponse(
                _chain(first, lines), content_type="text/plain; charset=utf-8"
            )
            response["X-Accel-Buffering"] = "no"
            return response
    return render(
        request,
        "compute/workload_logs.html",
        {"tenant": tenant, "workload": workload, "pod": pod, "pods": pods, "reason": reason},
    )


def _chain(first: str, rest):
    yield first
    yield from rest


def _back(request, tenant, workload) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("workload-detail", kwargs={"tenant": tenant.slug, "name": workload.name})
