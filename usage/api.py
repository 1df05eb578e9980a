"""REST API for usage and quota requests.

- ``GET /api/v1/tenants/<t>/usage/?start=YYYY-MM-DD&end=YYYY-MM-DD`` (``usage.view``):
  the report of the page (totals, per day, by kind, by resource, by label; cost where a
  price list applies). Defaults to this month so far.
- ``GET /api/v1/tenants/<t>/quota/requests/`` (``quota.view``): the tenant's quota
  requests, newest first; ``POST`` (``quota.request``, tenant admins) asks for more:
  ``{"spec": {"increase": {"vms": 2}, "reason": "..."}}`` → ``201`` with the request
  (``status.state`` ``Pending``, or ``Approved`` when an auto-approval rule took it).
"""

from __future__ import annotations

from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from portal.api.resources import metadata
from portal.exceptions import ApplicationError, ValidationError
from tenants.api import MetadataSerializer, TenantScopedView
from usage import selectors
from usage.choices import QuotaRequestState
from usage.models import QuotaRequest
from usage.services import requests as request_services


# --- Usage -------------------------------------------------------------------------------
class UsageAmountSerializer(serializers.Serializer):
    vcpu_hours = serializers.FloatField()
    vcpu_used_hours = serializers.FloatField()
    memory_gib_hours = serializers.FloatField()
    memory_used_gib_hours = serializers.FloatField()
    storage_gib_hours = serializers.FloatField()
    vm_hours = serializers.FloatField()
    pod_hours = serializers.FloatField()


class UsageLineSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    usage = UsageAmountSerializer()
    cost = serializers.DictField(
        child=serializers.CharField(), help_text="Amount per currency, e.g. {'EUR': '12.34'}."
    )
    kind = serializers.CharField(required=False)
    labels = serializers.DictField(child=serializers.CharField(), required=False)


class UsageReportSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    start = serializers.DateField()
    end = serializers.DateField()
    generated = serializers.DateTimeField()
    units = serializers.DictField(child=serializers.CharField())
    priced = serializers.BooleanField()
    currencies = serializers.ListField(child=serializers.CharField())
    totals = UsageLineSerializer()
    days = UsageLineSerializer(many=True)
    byKind = UsageLineSerializer(many=True)  # noqa: N815
    bySubject = UsageLineSerializer(many=True)  # noqa: N815
    byLabel = UsageLineSerializer(many=True)  # noqa: N815


class UsageView(TenantScopedView):
    serializer_class = UsageReportSerializer

    @extend_schema(
        operation_id="tenants_usage",
        summary="The tenant's usage (unit-hours, allocated and used) and cost over a period",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, description="First day (UTC)."),
            OpenApiParameter("end", OpenApiTypes.DATE, description="Last day (UTC), inclusive."),
        ],
        responses=UsageReportSerializer,
    )
    def get(self, request, tenant):
        obj = self.tenant("usage.view")
        start, end, errors = selectors.parse_period(
            request.query_params.get("start"), request.query_params.get("end"), strict=True
        )
        if errors:
            raise ValidationError(gettext("Invalid period."), errors=errors)
        return Response(selectors.usage_report(obj, start=start, end=end).as_dict())


# --- Quota requests ------------------------------------------------------------------------
class QuotaIncreaseSerializer(serializers.Serializer):
    cpu = serializers.DecimalField(
        max_digits=10, decimal_places=3, min_value=0, max_value=10**6, required=False
    )
    memory = serializers.IntegerField(min_value=0, max_value=10**6, required=False)
    storage = serializers.IntegerField(min_value=0, max_value=10**6, required=False)
    vms = serializers.IntegerField(min_value=0, max_value=10**6, required=False)
    pods = serializers.IntegerField(min_value=0, max_value=10**6, required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: [gettext("Unknown quota resource.")] for name in sorted(unknown)}
                )
        return super().to_internal_value(data)


class QuotaRequestSpecIn(serializers.Serializer):
    increase = QuotaIncreaseSerializer()
    reason = serializers.CharField(max_length=1000)


class QuotaRequestCreateSerializer(serializers.Serializer):
    spec = QuotaRequestSpecIn()


class QuotaRequestSpecOut(serializers.Serializer):
    increase = serializers.DictField(child=serializers.CharField())
    reason = serializers.CharField()


class QuotaRequestStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=QuotaRequestState.choices)
    requester = serializers.CharField()
    granted = serializers.DictField(child=serializers.CharField())
    decidedBy = serializers.CharField(allow_null=True)  # noqa: N815
    decided = serializers.DateTimeField(allow_null=True)
    decisionReason = serializers.CharField()  # noqa: N815
    autoApproved = serializers.BooleanField()  # noqa: N815


class QuotaRequestSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = QuotaRequestSpecOut()
    status = QuotaRequestStatusSerializer()

    def to_representation(self, request: QuotaRequest) -> dict:
        return {
            "metadata": metadata(request, name=request.name, tenant=request.tenant.slug),
            "spec": {
                "increase": {k: str(v) for k, v in request.increase.items()},
                "reason": request.reason,
            },
            "status": {
                "state": request.state,
                "requester": request.requester_name,
                "granted": {k: str(v) for k, v in request.granted.items()},
                "decidedBy": request.decided_by_name or None,
                "decided": request.decided.isoformat().replace("+00:00", "Z")
                if request.decided
                else None,
                "decisionReason": request.decision_reason,
                "autoApproved": request.auto_approved,
            },
        }


class QuotaRequestListView(TenantScopedView):
    serializer_class = QuotaRequestSerializer

    @extend_schema(
        operation_id="quota_requests_list",
        summary="The tenant's quota requests, newest first",
        responses=QuotaRequestSerializer(many=True),
    )
    def get(self, request, tenant):
        obj = self.tenant("quota.view")
        queryset = selectors.quota_requests_visible(obj).select_related("tenant")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(QuotaRequestSerializer(page, many=True).data)

    @extend_schema(
        operation_id="quota_requests_create",
        summary="Ask the platform for more quota (tenant admins)",
        request=QuotaRequestCreateSerializer,
        responses={201: QuotaRequestSerializer},
    )
    def post(self, request, tenant):
        obj = self.tenant("quota.request")
        serializer = QuotaRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = serializer.validated_data["spec"]
        try:
            created = request_services.quota_request_create(
                actor=request.user, tenant=obj, increase=spec["increase"], reason=spec["reason"]
            )
        except ApplicationError as error:
            # The service names its fields; the API's are under ``spec``.
            error.errors = {f"spec.{k}": v for k, v in (error.errors or {}).items()}
            raise
        return Response(QuotaRequestSerializer(created).data, status=status.HTTP_201_CREATED)
