"""REST API for Services (one load-balanced name in front of VMs and pods).

``/api/v1/tenants/<t>/services/`` lists (paginated, ``?phase=``) and creates Services
(``Idempotency-Key``); ``.../services/<s>/`` reads one, ``PATCH`` replaces its type
(ClusterIP ↔ NodePort), its selector and/or its ports and ``DELETE`` removes it (both
``If-Match``). The members are in
``status.endpoints``, as the last sync wrote them to the cluster's EndpointSlice.
Errors are problem+json with the API's field paths (``spec.ports[1].targetPort``).
"""

from __future__ import annotations

import re

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status

from compute import selectors
from compute.api import IDEMPOTENCY_KEY, IF_MATCH, PROBLEM_RESPONSE, TenantResourceView
from compute.choices import SERVICE_TYPES, ServicePhase
from compute.models import Service
from compute.network_api import NameIn
from compute.services import load_balancers as service_services
from portal.api.resources import StrictSerializer, check_if_match, metadata
from portal.exceptions import ApplicationError
from tenants import selectors as tenant_selectors
from tenants.models import Tenant

SERVICE_FIELDS = {
    "name": "metadata.name",
    "service_type": "spec.type",
    "selector": "spec.selector",
    "ports": "spec.ports",
}
PORT_FIELDS = {"target_port": "targetPort"}
_PORT_KEY = re.compile(r"ports\[(\d+)\](?:\.(\w+))?")


def _api_errors(error: ApplicationError) -> ApplicationError:
    renamed = {}
    for key, messages in (error.errors or {}).items():
        match = _PORT_KEY.fullmatch(key)
        if match:
            field = f".{PORT_FIELDS.get(match[2], match[2])}" if match[2] else ""
            renamed[f"spec.ports[{match[1]}]{field}"] = messages
        else:
            renamed[SERVICE_FIELDS.get(key, key)] = messages
    error.errors = renamed
    return error


def service_representation(service: Service, user) -> dict:
    role = tenant_selectors.role_of(user, service.tenant)
    return {
        "metadata": metadata(service, name=service.name, tenant=service.tenant.slug),
        "spec": {
            "type": service.service_type,
            "selector": service.selector,
            "ports": service.ports,
        },
        "status": {
            "phase": service.phase,
            "message": service.message,
            "observedGeneration": service.observed_generation,
            "clusterIP": service.cluster_ip or None,
            "nodePorts": service.node_ports,
            "endpoints": [
                {
                    "kind": m["kind"],
                    "name": m["name"],
                    "address": m["address"],
                    "ready": m["ready"],
                }
                for m in service.endpoints or []
            ],
            "actions": service_services.service_actions(service, role),
        },
    }


# --- Serializers -----------------------------------------------------------------------
class PortIn(StrictSerializer):
    name = serializers.CharField(
        required=False, allow_blank=True, help_text="Required when there are several ports."
    )
    protocol = serializers.CharField(required=False, help_text="TCP (default) or UDP.")
    port = serializers.CharField(help_text="The Service's port, 1–65535.")
    targetPort = serializers.CharField(  # noqa: N815
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text=(
            "The members' port (default: port): a number, or the name of the pods' "
            "container port (resolved per pod; a VM serves numeric target ports only)."
        ),
    )


class ServiceSpecIn(StrictSerializer):
    type = serializers.ChoiceField(choices=SERVICE_TYPES, required=False)
    selector = serializers.JSONField(
        required=False, help_text="Labels every member (VM or workload) carries, e.g. app: web."
    )
    ports = PortIn(many=True, required=False)


class ServiceCreateSerializer(StrictSerializer):
    metadata = NameIn()
    spec = ServiceSpecIn()


class ServicePatchSpecIn(StrictSerializer):
    type = serializers.ChoiceField(choices=SERVICE_TYPES, required=False)
    selector = serializers.JSONField(required=False)
    ports = PortIn(many=True, required=False)


class ServicePatchSerializer(StrictSerializer):
    spec = ServicePatchSpecIn()


def _ports(items: list[dict] | None) -> list[dict] | None:
    if items is None:
        return None
    return [
        {
            "name": item.get("name", ""),
            "protocol": item.get("protocol", "TCP"),
            "port": item["port"],
            "target_port": item.get("targetPort"),
        }
        for item in items
    ]


class ServiceSerializer(serializers.Serializer):
    metadata = serializers.DictField()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, service: Service) -> dict:
        return service_representation(service, self.context["request"].user)


# --- Views -----------------------------------------------------------------------------
class ServiceView(TenantResourceView):
    serializer_class = ServiceSerializer
    view_action = "service.view"
    detail_url_name = "service-api-detail"
    collection = "services"
    phases = tuple(ServicePhase.values)

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Service:
        return selectors.service_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)


class ServiceListView(ServiceView):
    @extend_schema(
        operation_id="services_list",
        summary="List the tenant's Services with their members",
        responses=ServiceSerializer(many=True),
    )
    def get(self, request, tenant):
        obj = self.tenant("service.view")
        return self.phase_page(selectors.services_for_tenant(request.user, obj))

    @extend_schema(
        operation_id="services_create",
        summary="Create a Service selecting VMs and pods by label",
        request=ServiceCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: ServiceSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("service.create")
        serializer = ServiceCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        spec = data["spec"]

        def make() -> Service:
            try:
                return service_services.service_create(
                    actor=request.user,
                    tenant=obj,
                    name=data["metadata"]["name"],
                    service_type=spec.get("type", "ClusterIP"),
                    selector=spec.get("selector"),
                    ports=_ports(spec.get("ports")),
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, make)


class ServiceDetailView(ServiceView):
    @extend_schema(operation_id="services_get", summary="One Service with its members")
    def get(self, request, tenant, name):
        obj = self.tenant("service.view")
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        operation_id="services_patch",
        summary="Replace a Service's type, selector and/or ports (its members follow)",
        request=ServicePatchSerializer,
        parameters=[IF_MATCH],
        responses={
            202: ServiceSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def patch(self, request, tenant, name):
        obj = self.allowed_tenant("service.update")
        serializer = ServicePatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = serializer.validated_data["spec"]
        return self.change(
            obj,
            lambda service: service_services.service_update(
                actor=request.user,
                service=service,
                service_type=spec.get("type"),
                selector=spec.get("selector"),
                ports=_ports(spec.get("ports")),
            ),
        )

    @extend_schema(
        operation_id="services_delete",
        summary="Delete a Service (its cluster objects go, then the Service)",
        parameters=[IF_MATCH],
        responses={
            202: ServiceSerializer,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("service.delete")
        try:
            with transaction.atomic():
                service = self.lookup(obj, name, lock=True)
                check_if_match(request, service)
                service = service_services.service_delete(actor=request.user, service=service)
        except ApplicationError as error:
            raise self.api_errors(error) from None
        return self.respond(service, status.HTTP_202_ACCEPTED)
