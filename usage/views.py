"""Usage pages: a tenant's usage over a period (chart, breakdowns, exports) and the
overview's "request more quota" form."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from portal.exceptions import ApplicationError
from portal.web import tenant_view
from tenants.models import QUOTA_RESOURCES
from usage import selectors
from usage.services import requests as request_services

TOP = 10


def _period(request):
    return selectors.parse_period(request.GET.get("start"), request.GET.get("end"))


def _shortcuts(today):
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return [
        (gettext("This month"), first, today),
        (gettext("Last month"), last_month_end.replace(day=1), last_month_end),
        (gettext("Last 7 days"), today - timedelta(days=6), today),
        (gettext("Last 30 days"), today - timedelta(days=29), today),
    ]


@tenant_view("usage.view")
@require_GET
def usage_page(request, tenant):
    start, end, errors = _period(request)
    if errors:
        for field, problems in errors.items():
            messages.error(
                request,
                f"{field}: {' '.join(problems)}",
            )
        start, end, _ = selectors.parse_period(None, None)
    report = selectors.usage_report(tenant, start=start, end=end)
    chart = {
        "days": [d.key for d in report.days],
        "metrics": {m: [float(d.hours[m]) for d in report.days] for m in selectors.METRICS},
        "labels": {m: selectors.metric_label(m) for m in selectors.METRICS},
        "cost": {
            currency: [float(d.cost.get(currency, 0)) for d in report.days]
            for currency in report.currencies
        },
    }
    return render(
        request,
        "usage/usage.html",
        {
            "tenant": tenant,
            "report": report,
            "top": report.top(TOP),
            "chart": chart,
            "shortcuts": _shortcuts(timezone.now().date()),
            "metrics": [(m, selectors.metric_label(m)) for m in selectors.METRICS],
        },
    )


@tenant_view("usage.view")
@require_GET
def usage_export(request, tenant):
    """The period's usage as CSV (one row per resource and day) or JSON (the report)."""
    start, end, errors = _period(request)
    fmt = request.GET.get("format", "csv")
    if fmt not in {"csv", "json"}:
        errors["format"] = ["csv or json."]
    if errors:
        return JsonResponse({"detail": "Invalid export.", "errors": errors}, status=400)
    report = selectors.usage_report(tenant, start=start, end=end)
    name = f"usage-{tenant.slug}-{start.isoformat()}-{end.isoformat()}"
    if fmt == "json":
        response = HttpResponse(
            json.dumps(report.as_dict(), indent=2), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    writer = csv.writer(response)
    for row in selectors.report_csv_rows(report):
        writer.writerow(row)
    return response


@tenant_view("quota.request")
@require_POST
def quota_request_create(request, tenant):
    """The overview's "Request more quota" form."""
    increase = {r: request.POST.get(f"increase_{r}", "").strip() for r in QUOTA_RESOURCES}
    try:
        created = request_services.quota_request_create(
            actor=request.user,
            tenant=tenant,
            increase={r: v for r, v in increase.items() if v},
            reason=request.POST.get("reason", ""),
        )
    except ApplicationError as error:
        details = "; ".join(
            f"{field.split('.')[-1]}: {' '.join(problems)}"
            for field, problems in (error.errors or {}).items()
        )
        messages.error(request, f"{error.message} {details}".strip())
        return redirect("tenant-overview", tenant=tenant.slug)
    if created.pending:
        messages.success(
            request,
            gettext("Quota request %(name)s sent: platform admins will decide on it.")
            % {"name": created.name},
        )
    else:
        messages.success(
            request,
            gettext("Quota request %(name)s was approved automatically.") % {"name": created.name},
        )
    return redirect("tenant-overview", tenant=tenant.slug)
