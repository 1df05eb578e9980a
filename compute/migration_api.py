"""REST API for live migrations: ``POST .../virtualmachines/<name>/migrate/``,
``GET /api/v1/tenants/<t>/migrations/[<uid>/]``, ``POST .../migrations/<uid>/cancel/``.

Thin: the services decide (``compute.services.migrations``). Hosts appear for platform
staff only; a tenant admin's request lets the scheduler choose the target.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from compute import selectors
from compute.api import PROBLEM_RESPONSE, VMView
from compute.models import Migration
from compute.services import migrations as services
from portal.api.resources import StrictSerializer, metadata


def migration_representation(migration: Migration, user) -> dict:
    """The migration as ``user`` sees it (hosts and the hypervisor's detail behind a
    failure for platform staff only)."""
    state = services.migration_state(migration)
    spec = {"virtualMachine": migration.vm_name, "reason": migration.request_note}
    if getattr(user, "is_staff", False):
        spec["targetHost"] = migration.target.name if migration.target_pinned else None
        state["sourceHost"] = migration.source.name
        state["targetHost"] = migration.target.name if migration.target else None
        state["detail"] = migration.detail
    for key in ("uid", "vm", "created"):
        state.pop(key)
    state["message"] = state.pop("reason")
    state["requestedBy"] = migration.requested_by.get_username() if migration.requested_by else None
    return {
        "metadata": metadata(migration, name=str(migration.uid), tenant=migration.tenant.slug),
        "spec": spec,
        "status": state,
    }


class MigrationSerializer(serializers.Serializer):
    metadata = serializers.DictField()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, migration: Migration) -> dict:
        return migration_representation(migration, self.context["request"].user)


class MigrateIn(StrictSerializer):
    target = serializers.CharField(
        required=False, help_text="Platform staff only: the host to move to."
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)


class MigrationView(VMView):
    serializer_class = MigrationSerializer

    def answer(self, migration: Migration, code: int = status.HTTP_200_OK) -> Response:
        response = Response(self.get_serializer(migration).data, status=code)
        response["Location"] = self.request.build_absolute_uri(
            reverse(
                "migration-api-detail",
                kwargs={"tenant": migration.tenant.slug, "uid": migration.uid},
            )
        )
        return response


class VMMigrateView(MigrationView):
    @extend_schema(
        operation_id="virtualmachines_migrate",
        summary="Live-migrate a running VM (accepted; queued until a slot is free)",
        request=MigrateIn,
        responses={
            202: MigrationSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("vm.migrate")
        data = MigrateIn(data=request.data)
        data.is_valid(raise_exception=True)
        vm = selectors.vm_get(request.user, obj, name)
        migration = services.migration_request(
            actor=request.user,
            vm=vm,
            target=data.validated_data.get("target"),
            note=data.validated_data.get("reason", ""),
        )
        return self.answer(migration, status.HTTP_202_ACCEPTED)


class MigrationListView(MigrationView):
    @extend_schema(
        operation_id="migrations_list",
        summary="The tenant's live migrations",
        responses=MigrationSerializer(many=True),
        parameters=[
            OpenApiParameter("vm", OpenApiTypes.STR, description="Only this VM's migrations.")
        ],
    )
    def get(self, request, tenant):
        obj = self.tenant("migration.view")
        queryset = selectors.migrations_for_tenant(
            request.user, obj, vm_name=request.query_params.get("vm", "")
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class MigrationDetailView(MigrationView):
    @extend_schema(operation_id="migrations_get", summary="One live migration")
    def get(self, request, tenant, uid):
        obj = self.tenant("migration.view")
        return self.answer(selectors.migration_get(request.user, obj, uid))


class MigrationCancelView(MigrationView):
    @extend_schema(
        operation_id="migrations_cancel",
        summary="Cancel a queued or running migration (the guest stays where it was)",
        request=None,
        responses={202: MigrationSerializer, 403: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE},
    )
    def post(self, request, tenant, uid):
        obj = self.tenant("migration.view")
        self.require(obj, "migration.cancel")
        migration = selectors.migration_get(request.user, obj, uid)
        migration = services.migration_cancel(actor=request.user, migration=migration)
        return self.answer(migration, status.HTTP_202_ACCEPTED)
