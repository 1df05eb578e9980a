"""REST API for security groups.

``/api/v1/tenants/<t>/securitygroups/`` lists and creates groups with their rules
(``Idempotency-Key``); ``.../securitygroups/<g>/`` reads one, ``PATCH`` replaces its
description and/or its whole rule list and ``DELETE`` removes it (both ``If-Match``;
409 while interfaces are in it or other groups' rules name it, and for ``default``).
A changed rule list is applied to the running interfaces by a task. Errors are
problem+json with the API's field paths (``spec.rules[1].portMax``).
"""

from __future__ import annotations

import re

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from compute import selectors
from compute.api import IDEMPOTENCY_KEY, IF_MATCH, PROBLEM_RESPONSE, TenantResourceView
from compute.choices import RuleDirection, RuleProtocol
from compute.models import SecurityGroup
from compute.network_api import NameIn
from compute.services import security_groups as group_services
from portal.api.resources import StrictSerializer, check_if_match, metadata
from portal.exceptions import ApplicationError
from tenants import selectors as tenant_selectors
from tenants.models import Tenant

RULE_FIELDS = {
    "direction": "direction",
    "protocol": "protocol",
    "port_min": "portMin",
    "port_max": "portMax",
    "remote_cidr": "remoteCIDR",
    "remote_group": "remoteGroup",
}
GROUP_FIELDS = {"name": "metadata.name", "description": "spec.description", "rules": "spec.rules"}
_RULE_KEY = re.compile(r"rules\[(\d+)\]\.(\w+)")


def _api_errors(error: ApplicationError) -> ApplicationError:
    renamed = {}
    for key, messages in (error.errors or {}).items():
        match = _RULE_KEY.fullmatch(key)
        if match:
            field = RULE_FIELDS.get(match[2], match[2])
            renamed[f"spec.rules[{match[1]}].{field}"] = messages
        else:
            renamed[GROUP_FIELDS.get(key, key)] = messages
    error.errors = renamed
    return error


def group_representation(group: SecurityGroup, user) -> dict:
    role = tenant_selectors.role_of(user, group.tenant)
    if "rules" in getattr(group, "_prefetched_objects_cache", {}):
        # The list's prefetch (security_groups_for_tenant), with each rule's remote group.
        rules = sorted(group.rules.all(), key=lambda rule: rule.pk)
    else:
        rules = group.rules.select_related("remote_group").order_by("id")
    interfaces = getattr(group, "member_count", None)  # counted by the list's statement
    return {
        "metadata": metadata(group, name=group.name, tenant=group.tenant.slug),
        "spec": {
            "description": group.description,
            "rules": [group_services.rule_representation(r) for r in rules],
        },
        "status": {
            "default": group.is_default,
            "interfaces": group.nics.count() if interfaces is None else interfaces,
            "message": group.message,
            "actions": group_services.group_actions(group, role),
        },
    }


# --- Serializers -----------------------------------------------------------------------
class RuleIn(StrictSerializer):
    direction = serializers.ChoiceField(choices=RuleDirection.choices)
    protocol = serializers.ChoiceField(choices=RuleProtocol.choices)
    portMin = serializers.CharField(  # noqa: N815
        required=False, allow_null=True, allow_blank=True, help_text="TCP/UDP: 1–65535."
    )
    portMax = serializers.CharField(  # noqa: N815
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="The range's last port (default: portMin).",
    )
    remoteCIDR = serializers.CharField(  # noqa: N815
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="The other side as an IPv4 CIDR (0.0.0.0/0: anywhere).",
    )
    remoteGroup = serializers.CharField(  # noqa: N815
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Or: the members of this security group of the tenant.",
    )


def _rules(items: list[dict]) -> list[dict]:
    return [
        {
            "direction": item["direction"],
            "protocol": item["protocol"],
            "port_min": item.get("portMin"),
            "port_max": item.get("portMax"),
            "remote_cidr": item.get("remoteCIDR") or "",
            "remote_group": item.get("remoteGroup") or "",
        }
        for item in items
    ]


class GroupSpecIn(StrictSerializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    rules = RuleIn(many=True, required=False)


class GroupCreateSerializer(StrictSerializer):
    metadata = NameIn()
    spec = GroupSpecIn(required=False)


class GroupPatchSerializer(StrictSerializer):
    spec = GroupSpecIn()


class GroupSerializer(serializers.Serializer):
    metadata = serializers.DictField()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, group: SecurityGroup) -> dict:
        return group_representation(group, self.context["request"].user)


# --- Views -----------------------------------------------------------------------------
class GroupView(TenantResourceView):
    serializer_class = GroupSerializer
    view_action = "securitygroup.view"
    detail_url_name = "securitygroup-api-detail"
    collection = "securitygroups"

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> SecurityGroup:
        return selectors.security_group_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)


class GroupListView(GroupView):
    @extend_schema(
        operation_id="securitygroups_list",
        summary="List the tenant's security groups with their rules",
        responses=GroupSerializer(many=True),
    )
    def get(self, request, tenant):
        obj = self.tenant("securitygroup.view")
        page = self.paginate_queryset(selectors.security_groups_for_tenant(request.user, obj))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="securitygroups_create",
        summary="Create a security group with its rules",
        request=GroupCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: GroupSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("securitygroup.create")
        serializer = GroupCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        spec = data.get("spec") or {}

        def make() -> SecurityGroup:
            try:
                return group_services.group_create(
                    actor=request.user,
                    tenant=obj,
                    name=data["metadata"]["name"],
                    description=spec.get("description", ""),
                    rules=_rules(spec.get("rules", [])),
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, make)


class GroupDetailView(GroupView):
    @extend_schema(operation_id="securitygroups_get", summary="One security group")
    def get(self, request, tenant, name):
        obj = self.tenant("securitygroup.view")
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        operation_id="securitygroups_patch",
        summary="Replace a group's description and/or rules (applied to running VMs)",
        request=GroupPatchSerializer,
        parameters=[IF_MATCH],
        responses={
            202: GroupSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def patch(self, request, tenant, name):
        obj = self.allowed_tenant("securitygroup.update")
        serializer = GroupPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = serializer.validated_data["spec"]
        rules = _rules(spec["rules"]) if "rules" in spec else None
        return self.change(
            obj,
            lambda group: group_services.group_update(
                actor=request.user, group=group, description=spec.get("description"), rules=rules
            ),
        )

    @extend_schema(
        operation_id="securitygroups_delete",
        summary="Delete a security group no interface is in",
        parameters=[IF_MATCH],
        responses={
            204: None,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("securitygroup.delete")
        try:
            with transaction.atomic():
                group = self.lookup(obj, name, lock=True)
                check_if_match(request, group)
                group_services.group_delete(actor=request.user, group=group)
        except ApplicationError as error:
            raise self.api_errors(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
