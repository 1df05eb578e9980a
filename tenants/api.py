"""REST API for tenants, their quota and members (``/api/v1/tenants/...``)."""

from __future__ import annotations

import re

from django.db import transaction
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from portal.api.errors import ProblemSerializer
from portal.api.resources import (
    IF_MATCH,
    StrictSerializer,
    check_if_match,
    etag,
    label_map_field,
    metadata,
)
from portal.exceptions import NotFound, PermissionDenied
from tenants import selectors, services
from tenants.choices import Role
from tenants.models import QUOTA_RESOURCES, Membership, Quota, Tenant


# --- Serializers -----------------------------------------------------------------------
# Output serializers declare their fields for the OpenAPI schema and build the
# metadata/spec/status shape in ``to_representation``.
class MetadataSerializer(serializers.Serializer):
    name = serializers.CharField()
    uid = serializers.UUIDField(required=False)
    tenant = serializers.CharField(required=False)
    created = serializers.DateTimeField()
    resourceVersion = serializers.CharField(required=False)  # noqa: N815
    labels = label_map_field(required=False)


class TenantSpecSerializer(serializers.Serializer):
    displayName = serializers.CharField()  # noqa: N815
    description = serializers.CharField()


class TenantStatusSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
    namespace = serializers.CharField()


class TenantSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = TenantSpecSerializer()
    status = TenantStatusSerializer()

    def to_representation(self, tenant: Tenant) -> dict:
        user = self.context["request"].user
        return {
            "metadata": metadata(tenant, name=tenant.slug),
            "spec": {"displayName": tenant.name, "description": tenant.description},
            "status": {
                "role": selectors.role_of(user, tenant),
                "namespace": tenant.namespace,
            },
        }


def quota_representation(tenant: Tenant, quota: Quota) -> dict:
    usage = {u.resource: u for u in selectors.quota_usage(tenant)}
    return {
        "metadata": metadata(quota, name="quota", tenant=tenant.slug),
        "spec": {"hard": {r: usage[r].limit for r in QUOTA_RESOURCES}},
        "status": {
            "hard": {r: usage[r].limit for r in QUOTA_RESOURCES},
            "used": {r: usage[r].used for r in QUOTA_RESOURCES},
            "left": {r: usage[r].left for r in QUOTA_RESOURCES},
            "units": dict(QUOTA_RESOURCES),
        },
    }


CORES_TEXT = r"[0-9]{1,7}(\.[0-9]{1,3})?"


@extend_schema_field(
    {
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": 9999999.999},
            {"type": "string", "pattern": f"^{CORES_TEXT}$"},
        ]
    }
)
class CoresField(serializers.DecimalField):
    """Cores as a JSON number or a plain decimal string ("2.5"); no exponents, spaces or
    signs, so that what the schema documents is exactly what is accepted."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or (isinstance(data, str) and not re.fullmatch(CORES_TEXT, data)):
            self.fail("invalid")
        return super().to_internal_value(data)


class QuotaHardSerializer(StrictSerializer):
    unknown_message = _("Unknown quota resource.")

    cpu = CoresField(max_digits=10, decimal_places=3, min_value=0, required=False)
    memory = serializers.IntegerField(min_value=0, max_value=10**9, required=False)
    storage = serializers.IntegerField(min_value=0, max_value=10**9, required=False)
    vms = serializers.IntegerField(min_value=0, max_value=10**9, required=False)
    pods = serializers.IntegerField(min_value=0, max_value=10**9, required=False)


class QuotaSpecSerializer(StrictSerializer):
    hard = QuotaHardSerializer()


class QuotaPatchSerializer(StrictSerializer):
    spec = QuotaSpecSerializer()


class ResourceAmountsSerializer(serializers.Serializer):
    cpu = serializers.DecimalField(max_digits=10, decimal_places=3, coerce_to_string=False)
    memory = serializers.IntegerField()
    storage = serializers.IntegerField()
    vms = serializers.IntegerField()
    pods = serializers.IntegerField()


class QuotaStatusSerializer(serializers.Serializer):
    hard = ResourceAmountsSerializer()
    used = ResourceAmountsSerializer()
    left = ResourceAmountsSerializer()
    units = serializers.DictField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField(), required=False)


class QuotaSpecOutSerializer(serializers.Serializer):
    hard = ResourceAmountsSerializer()


class QuotaSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = QuotaSpecOutSerializer()
    status = QuotaStatusSerializer()


class MemberSpecSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberStatusSerializer(serializers.Serializer):
    fullName = serializers.CharField()  # noqa: N815
    email = serializers.CharField()


class MemberSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = MemberSpecSerializer()
    status = MemberStatusSerializer()

    def to_representation(self, membership: Membership) -> dict:
        return {
            "metadata": {
                "name": membership.user.username,
                "tenant": membership.tenant.slug,
                "created": membership.created.isoformat().replace("+00:00", "Z"),
            },
            "spec": {"role": membership.role},
            "status": {
                "fullName": membership.user.get_full_name(),
                "email": membership.user.email,
            },
        }


class MemberMetadataIn(StrictSerializer):
    name = serializers.CharField(max_length=150)


class MemberSpecIn(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberCreateSerializer(StrictSerializer):
    metadata = MemberMetadataIn()
    spec = MemberSpecIn()


class MemberPatchSerializer(StrictSerializer):
    spec = MemberSpecIn()


# --- Views -----------------------------------------------------------------------------
class TenantScopedView(GenericAPIView):
    """Base for ``/tenants/<tenant>/...`` views: resolves the tenant with its action."""

    def tenant(self, action: str) -> Tenant:
        return services.tenant_access(
            user=self.request.user,
            slug=self.kwargs["tenant"],
            action=action,
            target=self.request.path,
        )


class TenantListView(GenericAPIView):
    serializer_class = TenantSerializer

    def get_queryset(self):
        return selectors.tenants_for_user(self.request.user)

    @extend_schema(
        operation_id="tenants_list",
        summary="List the tenants you are a member of",
        responses=TenantSerializer(many=True),
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class TenantDetailView(TenantScopedView):
    serializer_class = TenantSerializer

    @extend_schema(operation_id="tenants_get", summary="One tenant")
    def get(self, request, tenant):
        obj = self.tenant("tenant.view")
        return Response(self.get_serializer(obj).data, headers={"ETag": etag(obj)})


class QuotaView(TenantScopedView):
    serializer_class = QuotaSerializer

    def _tenant_for_staff_or_member(self, action: str) -> Tenant:
        user = self.request.user
        if user.is_staff:
            tenant = Tenant.objects.filter(slug=self.kwargs["tenant"]).first()
            if tenant is None:
                raise NotFound(
                    gettext("Tenant %(tenant)s not found.")
                    % {"tenant": repr(self.kwargs["tenant"])}
                )
            return tenant
        return self.tenant(action)

    @extend_schema(
        summary="The tenant's quota: limits (hard), used and left", responses=QuotaSerializer
    )
    def get(self, request, tenant):
        obj = self._tenant_for_staff_or_member("quota.view")
        quota = Quota.objects.get(tenant=obj)
        return Response(quota_representation(obj, quota), headers={"ETag": etag(quota)})

    @extend_schema(
        summary="Change the quota (platform staff only)",
        request=QuotaPatchSerializer,
        parameters=[IF_MATCH],
        responses={200: QuotaSerializer, 412: ProblemSerializer},
    )
    def patch(self, request, tenant):
        obj = self._tenant_for_staff_or_member("quota.view")
        if not request.user.is_staff:
            services.audit_record(
                actor=request.user,
                action="quota.set",
                tenant=obj,
                target=f"quota/{obj.slug}",
                outcome="denied",
            )
            raise PermissionDenied(gettext("Only platform staff change quotas."))
        serializer = QuotaPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            quota = Quota.objects.select_for_update().get(tenant=obj)
            check_if_match(request, quota)
            change = services.quota_set(
                actor=request.user, tenant=obj, limits=serializer.validated_data["spec"]["hard"]
            )
        body = quota_representation(obj, change.quota)
        if change.below_use:
            body["status"]["warnings"] = [
                gettext(
                    "%(resource)s: limit is below current use; new reservations will be refused"
                )
                % {"resource": r}
                for r in change.below_use
            ]
        return Response(body, headers={"ETag": etag(change.quota)})


class MemberListView(TenantScopedView):
    serializer_class = MemberSerializer

    @extend_schema(
        operation_id="members_list",
        summary="Members of the tenant and their roles",
        responses=MemberSerializer(many=True),
    )
    def get(self, request, tenant):
        obj = self.tenant("member.view")
        page = self.paginate_queryset(selectors.memberships_of(obj))
        for membership in page:
            membership.tenant = obj  # every row's tenant: not one read per member
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(
        summary="Add a member (tenant admins)",
        request=MemberCreateSerializer,
        responses={201: MemberSerializer, 409: ProblemSerializer},
    )
    def post(self, request, tenant):
        obj = self.tenant("member.manage")
        serializer = MemberCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        membership = services.membership_add(
            actor=request.user,
            tenant=obj,
            user=data["metadata"]["name"],
            role=data["spec"]["role"],
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(TenantScopedView):
    serializer_class = MemberSerializer

    def _membership(self, obj: Tenant) -> Membership:
        membership = (
            selectors.memberships_of(obj).filter(user__username=self.kwargs["username"]).first()
        )
        if membership is None:
            raise NotFound(
                gettext("%(username)s is not a member of %(tenant)s.")
                % {"username": repr(self.kwargs["username"]), "tenant": obj.slug}
            )
        return membership

    @extend_schema(operation_id="members_get", summary="One member")
    def get(self, request, tenant, username):
        obj = self.tenant("member.view")
        return Response(MemberSerializer(self._membership(obj)).data)

    @extend_schema(
        summary="Change a member's role (tenant admins; never the last admin)",
        request=MemberPatchSerializer,
        responses={200: MemberSerializer, 409: ProblemSerializer},
    )
    def patch(self, request, tenant, username):
        obj = self.tenant("member.manage")
        membership = self._membership(obj)
        serializer = MemberPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.membership_set_role(
            actor=request.user,
            tenant=obj,
            user=membership.user,
            role=serializer.validated_data["spec"]["role"],
        )
        return Response(MemberSerializer(membership).data)

    @extend_schema(
        summary="Remove a member (tenant admins; never the last admin)",
        responses={204: None, 409: ProblemSerializer},
    )
    def delete(self, request, tenant, username):
        obj = self.tenant("member.manage")
        membership = self._membership(obj)
        services.membership_remove(actor=request.user, tenant=obj, user=membership.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
