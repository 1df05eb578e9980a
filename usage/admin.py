"""Django admin for usage: every tenant's monthly usage (with a CSV report), price
lists, quota requests (review with the tenant's usage history; approve, maybe in part,
or reject) and auto-approval rules. Decisions and price changes go through services
and are audited."""

from __future__ import annotations

import csv
from datetime import date, timedelta

from django.contrib import admin, messages
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import dateformat, timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from portal.exceptions import ApplicationError
from tenants.models import QUOTA_LABELS, QUOTA_RESOURCES
from tenants.selectors import quota_usage
from usage import selectors
from usage.choices import QuotaRequestState
from usage.models import PriceList, QuotaAutoApproval, QuotaRequest, UsageDaily
from usage.services import prices
from usage.services import requests as request_services


def _month(request) -> date:
    text = request.GET.get("month", "")
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError:
        return timezone.now().date().replace(day=1)


@admin.register(UsageDaily)
class UsageAdmin(admin.ModelAdmin):
    """ "Usage": every tenant's month (deleted tenants too), with the monthly CSV."""

    change_list_template = "admin/usage/monthly.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path(
                "report.csv",
                self.admin_site.admin_view(self.report_csv),
                name="usage_usagedaily_report",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context)
        month = _month(request)
        first, last = selectors.month_bounds(month)
        previous = (first.replace(day=1) - timedelta(days=1)).replace(day=1)
        following = (last + timedelta(days=1)).replace(day=1)
        lines = selectors.monthly_report(month)
        currencies = sorted({c for line in lines for c in line.cost})
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Usage in %(month)s") % {"month": dateformat.format(month, "F Y")},
            "opts": self.model._meta,
            "month": month,
            "previous": previous,
            "following": following if following <= timezone.now().date() else None,
            "lines": lines,
            "currencies": currencies,
            "metrics": [(m, selectors.metric_label(m)) for m in selectors.METRICS],
        }
        return TemplateResponse(request, self.change_list_template, context)

    def report_csv(self, request):
        month = _month(request)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="usage-{month:%Y-%m}.csv"'
        writer = csv.writer(response)
        for row in selectors.monthly_csv_rows(month, selectors.monthly_report(month)):
            writer.writerow(row)
        return response


@admin.register(PriceList)
class PriceListAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "currency",
        "effective_from",
        "effective_to",
        "applies_to_all",
        "tenant_list",
        "vcpu_hour",
        "memory_gib_hour",
    ]
    list_filter = ["currency", "applies_to_all"]
    search_fields = ["name", "tenants__slug"]
    filter_horizontal = ["tenants"]
    fieldsets = [
        (None, {"fields": ["name", "currency", ("effective_from", "effective_to")]}),
        (_("Who"), {"fields": ["applies_to_all", "tenants"]}),
        (
            _("Prices per unit-hour"),
            {
                "fields": [
                    ("vcpu_hour", "memory_gib_hour", "storage_gib_hour"),
                    ("vm_hour", "pod_hour"),
                ]
            },
        ),
    ]

    @admin.display(description=_("Tenants"))
    def tenant_list(self, obj: PriceList) -> str:
        return (
            gettext("all without their own")
            if obj.applies_to_all
            else ", ".join(t.slug for t in obj.tenants.all())
        )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tenants")

    def save_model(self, request, obj, form, change):
        prices.price_list_save(actor=request.user, price_list=obj, created=not change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        prices.price_list_tenants_changed(actor=request.user, price_list=form.instance)

    def delete_model(self, request, obj):
        prices.price_list_delete(actor=request.user, price_list=obj)

    def delete_queryset(self, request, queryset):
        for price_list in queryset:
            prices.price_list_delete(actor=request.user, price_list=price_list)


@admin.register(QuotaAutoApproval)
class QuotaAutoApprovalAdmin(admin.ModelAdmin):
    list_display = ["tenant", "enabled", "max_percent", "period_days"]
    list_filter = ["enabled"]
    autocomplete_fields = ["tenant"]

    def save_model(self, request, obj, form, change):
        prices.auto_approval_save(actor=request.user, rule=obj)

    def delete_model(self, request, obj):
        prices.auto_approval_delete(actor=request.user, rule=obj)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            prices.auto_approval_delete(actor=request.user, rule=rule)


@admin.register(QuotaRequest)
class QuotaRequestAdmin(admin.ModelAdmin):
    """Pending requests first; a request's page is its review: what was asked and why,
    the tenant's quota and last 30 days of usage, and the decision."""

    list_display = ["name", "tenant", "requester_name", "asked", "state", "created", "decided"]
    list_filter = ["state", "auto_approved", "tenant"]
    search_fields = ["tenant__slug", "requester_name", "reason"]
    list_select_related = ["tenant"]
    change_form_template = "admin/usage/quotarequest/review.html"

    def get_ordering(self, request):
        return ["waiting", "-created"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("Name"), ordering="id")
    def name(self, obj: QuotaRequest) -> str:
        return obj.name

    @admin.display(description=_("Asked for"))
    def asked(self, obj: QuotaRequest) -> str:
        return request_services.describe_amounts(obj.increase)

    def get_queryset(self, request):
        # Pending requests are what staff come here for: they come first.
        queryset = self.model._default_manager.get_queryset().annotate(
            waiting=Case(
                When(state=QuotaRequestState.PENDING, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        return queryset.order_by(*self.get_ordering(request))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        request_obj = get_object_or_404(QuotaRequest.objects.select_related("tenant"), pk=object_id)
        if not self.has_view_permission(request, request_obj):
            return super().change_view(request, object_id, form_url, extra_context)
        values = {}
        if request.method == "POST" and self.has_change_permission(request, request_obj):
            approve = "approve" in request.POST
            granted = {
                r: request.POST.get(f"granted_{r}", "").strip() for r in request_obj.increase
            }
            values = {"granted": granted, "reason": request.POST.get("reason", "")}
            try:
                decided = request_services.quota_request_decide(
                    actor=request.user,
                    request=request_obj,
                    approve=approve,
                    granted=granted if approve else None,
                    reason=request.POST.get("reason", ""),
                )
            except ApplicationError as error:
                details = " ".join(
                    f"{field.split('.')[-1]}: {' '.join(problems)}"
                    for field, problems in (error.errors or {}).items()
                )
                self.message_user(request, f"{error.message} {details}".strip(), messages.ERROR)
            else:
                self.message_user(
                    request,
                    gettext("%(request)s of %(tenant)s: %(state)s.")
                    % {
                        "request": decided.name,
                        "tenant": decided.tenant.slug,
                        "state": decided.get_state_display().lower(),
                    },
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:usage_quotarequest_changelist"))
        tenant = request_obj.tenant
        history = selectors.daily_history(tenant, days=30)
        rows = [
            {
                "resource": r,
                "label": QUOTA_LABELS[r],
                "unit": QUOTA_RESOURCES[r],
                "asked": request_services.request_amount(v),
                "granted": values.get("granted", {}).get(
                    r, request_services.request_amount(request_obj.granted.get(r, v))
                ),
                "limit": request_obj.limits_before.get(r),
            }
            for r, v in request_obj.increase.items()
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Quota request %(request)s of %(tenant)s")
            % {"request": request_obj.name, "tenant": tenant.slug},
            "opts": self.model._meta,
            "original": request_obj,
            "item": request_obj,
            "rows": rows,
            "reason_value": values.get("reason", ""),
            "usage": quota_usage(tenant),
            "history": history,
            "history_chart": {
                "days": [d.key[5:] for d in history],
                "vcpu": [float(d.hours["vcpu_hours"]) for d in history],
                "vcpu_used": [float(d.hours["vcpu_used_hours"]) for d in history],
                "vm": [float(d.hours["vm_hours"]) for d in history],
                "pod": [float(d.hours["pod_hours"]) for d in history],
            },
            "history_total": selectors.sum_lines("total", "Total", history),
            "can_decide": request_obj.pending and self.has_change_permission(request, request_obj),
            "has_view_permission": True,
        }
        return TemplateResponse(request, self.change_form_template, context)
