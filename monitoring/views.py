"""Monitoring pages: the tenant's event timeline, its webhooks (admins), and the JSON
series behind the VM metric charts."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from monitoring import live, selectors, services
from monitoring.choices import EventType
from monitoring.filters import EventFilter
from portal.exceptions import ApplicationError, NotFound
from portal.reveal import reveal_done, reveal_stash, reveal_take
from portal.web import tenant_view

PAGE_SIZE = 50
NEW_SECRET = "webhook_secret"


@tenant_view("event.view")
@require_GET
def event_list(request, tenant):
    baseline = live.page_baseline(tenant)  # read before the query (tenant_view)
    events = EventFilter(request.GET, queryset=selectors.events_visible(request.user, tenant))
    page = Paginator(events.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "monitoring/event_list.html",
        {
            "tenant": tenant,
            "filter": events,
            "page": page,
            "query": query.urlencode(),
            "filters": {f: events.form[f].value() or "" for f in EventFilter.Meta.fields},
            "live": page.number == 1,
            "live_baseline": baseline,
            "page_size": PAGE_SIZE,
            "event_types": EventType.choices,
        },
    )


@tenant_view("webhook.manage")
@require_GET
def webhook_list(request, tenant):
    secret = reveal_take(request, name=NEW_SECRET)
    response = render(
        request,
        "monitoring/webhook_list.html",
        {
            "tenant": tenant,
            "webhooks": selectors.webhooks_of(tenant),
            "deliveries": selectors.deliveries_recent(tenant),
            "new_secret": {"secret": secret} if secret else None,
        },
    )
    response["Cache-Control"] = "no-store"
    reveal_done(request, response, name=NEW_SECRET)
    return response


@tenant_view("webhook.manage")
@require_POST
def webhook_add(request, tenant):
    try:
        webhook, secret = services.webhook_create(
            actor=request.user,
            tenant=tenant,
            url=request.POST.get("url", ""),
            description=request.POST.get("description", ""),
        )
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("webhook-list", tenant=tenant.slug)
    messages.success(request, gettext("Webhook added for %(url)s.") % {"url": webhook.url})
    # Shown once on the next page (post/redirect/get), never readable in the session.
    response = redirect("webhook-list", tenant=tenant.slug)
    reveal_stash(request, response, name=NEW_SECRET, secret=secret)
    return response


@tenant_view("webhook.manage")
@require_POST
def webhook_delete(request, tenant, uid):
    try:
        services.webhook_delete(actor=request.user, tenant=tenant, webhook_uid=str(uid))
        messages.success(request, gettext("Webhook deleted."))
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect("webhook-list", tenant=tenant.slug)


@tenant_view("vm.view")
@require_GET
def vm_metrics(request, tenant, name: str):
    """JSON series for the VM detail charts: ``?range=1h|6h|24h|7d`` (default 1h)."""
    from compute import selectors as compute_selectors

    window = request.GET.get("range", "1h")
    if window not in selectors.METRIC_RANGES:
        return JsonResponse(
            {"detail": f"range must be one of {', '.join(selectors.METRIC_RANGES)}."}, status=400
        )
    try:
        vm = compute_selectors.vm_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None
    return JsonResponse(selectors.vm_metric_series(vm, window=window))
