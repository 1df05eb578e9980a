"""REST API for container workloads (``/api/v1/tenants/<t>/workloads/...``).

The same conventions as the VM API (``compute.api``): the metadata/spec/status shape,
``Idempotency-Key`` on create, ``If-Match`` on changes, actions as POST subresources
answering 202, problem+json errors whose fields carry the API's dotted paths.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from compute import selectors
from compute.api import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    PROBLEM_RESPONSE,
    TenantResourceView,
)
from compute.choices import Phase, ServiceType, WorkloadKind
from compute.models import Workload
from compute.quantities import format_cpu, format_memory
from compute.services import workloads as workload_services
from compute.services.readiness import workload_ready_condition
from portal.api.errors import api_field_errors
from portal.api.resources import StrictSerializer, label_map_field, metadata
from portal.exceptions import ApplicationError
from tenants import selectors as tenant_selectors
from tenants.api import MetadataSerializer
from tenants.models import Tenant

# Service field names → the API's dotted paths.
API_FIELDS = {
    "name": "metadata.name",
    "labels": "metadata.labels",
    "kind": "spec.kind",
    "image": "spec.image",
    "replicas": "spec.replicas",
    "cpu_request": "spec.resources.requests.cpu",
    "memory_request": "spec.resources.requests.memory",
    "cpu_limit": "spec.resources.limits.cpu",
    "memory_limit": "spec.resources.limits.memory",
    "command": "spec.command",
    "args": "spec.args",
    "env": "spec.env",
    "ports": "spec.ports",
    "service_type": "spec.service.type",
    "volumes": "spec.volumes",
    "security_groups": "spec.securityGroups",
    "phase": "status.phase",
}
# Which spec field a quota refusal is about.
QUOTA_FIELDS = {
    "cpu": "spec.resources.requests.cpu",
    "memory": "spec.resources.requests.memory",
    "pods": "spec.replicas",
}


def _api_errors(error: ApplicationError) -> ApplicationError:
    return api_field_errors(error, fields=API_FIELDS, quota_fields=QUOTA_FIELDS)


def workload_representation(workload: Workload, user) -> dict:
    role = tenant_selectors.role_of(user, workload.tenant)
    resources = {
        "requests": {
            "cpu": format_cpu(workload.cpu_request_m),
            "memory": format_memory(workload.memory_request),
        },
        "limits": {
            "cpu": format_cpu(workload.cpu_limit_m),
            "memory": format_memory(workload.memory_limit),
        },
    }
    data_status = {
        "phase": workload.phase,
        "message": workload.message,
        "phaseChanged": workload.phase_changed.isoformat().replace("+00:00", "Z"),
        "conditions": [workload_ready_condition(workload)],
        "replicas": workload.replicas,
        "readyReplicas": workload.ready_replicas,
        "availableReplicas": workload.available_replicas,
        "pods": [
            {k: p.get(k) for k in ("name", "phase", "node", "restarts", "ready")}
            for p in workload.pods
        ],
        "actions": workload_services.allowed_actions(workload, role),
    }
    if getattr(user, "is_staff", False):
        data_status["cluster"] = workload.cluster.name
    return {
        "metadata": metadata(
            workload, name=workload.name, tenant=workload.tenant.slug, labels=workload.labels
        ),
        "spec": {
            "kind": workload.kind,
            "image": workload.image,
            "replicas": workload.replicas,
            "command": workload.command,
            "args": workload.args,
            "env": workload.env,
            "ports": workload.ports,
            "resources": resources,
            "service": {"type": workload.service_type} if workload.service_type else None,
            "volumes": workload.volumes,
            "securityGroups": workload_services.workload_groups(workload),
        },
        "status": data_status,
    }


def workload_create_document(workload: Workload) -> dict:
    """What ``POST .../workloads/`` would take to make a workload like ``workload`` (a new
    name, the same spec and labels): the "Copy as new" of its YAML page."""
    spec = workload_representation(workload, None)["spec"]
    # The groups it names (none: the default group, which the copy gets by naming none).
    spec["securityGroups"] = sorted(g.name for g in workload.security_groups.all())
    # What the create accepts, without the empty parts (their defaults are the same).
    document = {key: value for key, value in spec.items() if value not in (None, [], {})}
    metadata = {"name": f"{workload.name}-copy"}
    if workload.labels:
        metadata["labels"] = workload.labels
    return {"metadata": metadata, "spec": document}


def workload_create_from_api(*, actor, tenant: Tenant, data: dict) -> Workload:
    """Create the workload described by ``data`` (``WorkloadCreateSerializer``'s validated
    data). The API's create and the "Create from YAML" page both come here; service
    errors name the API's field paths (``spec.resources.requests.cpu``)."""
    spec, meta = data["spec"], data["metadata"]
    resources = spec.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    try:
        return workload_services.workload_create(
            actor=actor,
            tenant=tenant,
            name=meta["name"],
            kind=spec["kind"],
            image=spec["image"],
            replicas=spec["replicas"],
            cpu_request=requests.get("cpu", "100m"),
            memory_request=requests.get("memory", "128Mi"),
            cpu_limit=limits.get("cpu"),
            memory_limit=limits.get("memory"),
            command=spec.get("command"),
            args=spec.get("args"),
            env=spec.get("env"),
            ports=spec.get("ports"),
            service_type=(spec.get("service") or {}).get("type", ""),
            volumes=[dict(m) for m in spec.get("volumes") or []],
            labels=meta.get("labels"),
            security_groups=spec.get("securityGroups"),
        )
    except ApplicationError as error:
        raise _api_errors(error) from None


# --- Serializers -----------------------------------------------------------------------
class QuantitiesSerializer(StrictSerializer):
    cpu = serializers.CharField(required=False, help_text="e.g. 250m or 0.5")
    memory = serializers.CharField(required=False, help_text="e.g. 128Mi or 1Gi")


class ResourcesIn(StrictSerializer):
    requests = QuantitiesSerializer(required=False)
    limits = QuantitiesSerializer(required=False, help_text="Default: the requests.")


class ServiceIn(StrictSerializer):
    type = serializers.ChoiceField(choices=[ServiceType.CLUSTER_IP, ServiceType.NODE_PORT])


class MountIn(StrictSerializer):
    volume = serializers.CharField(help_text="A Kubernetes volume (claim) of the tenant.")
    mountPath = serializers.CharField(help_text="Absolute path in the container.")  # noqa: N815
    readOnly = serializers.BooleanField(default=False)  # noqa: N815


class WorkloadMetadataIn(StrictSerializer):
    name = serializers.CharField(
        help_text="A DNS label starting with a letter (≤ 46 for a Deployment)."
    )
    labels = label_map_field(required=False)


class WorkloadSpecIn(StrictSerializer):
    kind = serializers.ChoiceField(choices=WorkloadKind.choices, default=WorkloadKind.DEPLOYMENT)
    image = serializers.CharField(help_text="[registry/]name[:tag][@digest]")
    replicas = serializers.IntegerField(default=1)
    command = serializers.ListField(child=serializers.CharField(), required=False)
    args = serializers.ListField(child=serializers.CharField(), required=False)
    env = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    ports = serializers.ListField(child=serializers.IntegerField(), required=False)
    resources = ResourcesIn(required=False)
    service = ServiceIn(required=False, allow_null=True)
    volumes = MountIn(many=True, required=False, help_text="Volume claims the pods mount.")
    securityGroups = serializers.ListField(  # noqa: N815
        child=serializers.CharField(),
        required=False,
        help_text="Security groups of the tenant its pods are in (default: the default group).",
    )


class WorkloadCreateSerializer(StrictSerializer):
    metadata = WorkloadMetadataIn()
    spec = WorkloadSpecIn()


class ScaleIn(StrictSerializer):
    replicas = serializers.IntegerField()


class WorkloadPatchMetadataIn(StrictSerializer):
    unknown_message = _("This field cannot be changed; only labels.")

    labels = label_map_field(
        help_text="The workload's new labels, the whole map ({} removes them all): on a "
        "Deployment's pod template (a rollout; the selector stays) or a Pod's own labels. "
        "Services select their pod members by label."
    )


class WorkloadPatchSpecIn(StrictSerializer):
    unknown_message = _("This field cannot be changed; only securityGroups.")

    securityGroups = serializers.ListField(  # noqa: N815
        child=serializers.CharField(),
        help_text="The security groups its pods are in, all of them (at least one): a "
        "Deployment's pods roll to carry the new groups' labels; a Pod's are patched.",
    )


class WorkloadPatchSerializer(StrictSerializer):
    metadata = WorkloadPatchMetadataIn(required=False)
    spec = WorkloadPatchSpecIn(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                _("Give metadata.labels, spec.securityGroups or both.")
            )
        return attrs


class WorkloadSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, workload: Workload) -> dict:
        return workload_representation(workload, self.context["request"].user)


# --- Views -----------------------------------------------------------------------------
class WorkloadView(TenantResourceView):
    serializer_class = WorkloadSerializer
    view_action = "workload.view"
    detail_url_name = "workload-api-detail"
    collection = "workloads"

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Workload:
        return selectors.workload_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)


class WorkloadListView(WorkloadView):
    @extend_schema(
        operation_id="workloads_list",
        summary="List the tenant's container workloads",
        responses=WorkloadSerializer(many=True),
        parameters=[
            OpenApiParameter("phase", OpenApiTypes.STR, enum=Phase.values, description="Filter.")
        ],
    )
    def get(self, request, tenant):
        obj = self.tenant("workload.view")
        return self.phase_page(selectors.workload_list_rows(request.user, obj))

    @extend_schema(
        operation_id="workloads_create",
        summary="Create a Deployment or a Pod (accepted; created asynchronously)",
        request=WorkloadCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: WorkloadSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("workload.create")
        serializer = WorkloadCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.create(
            obj,
            lambda: workload_create_from_api(
                actor=request.user, tenant=obj, data=serializer.validated_data
            ),
        )


class WorkloadDetailView(WorkloadView):
    @extend_schema(operation_id="workloads_get", summary="One workload")
    def get(self, request, tenant, name):
        obj = self.tenant("workload.view")
        return self.respond(selectors.workload_get(request.user, obj, name))

    @extend_schema(
        operation_id="workloads_patch",
        summary="Change a workload's labels and/or security groups",
        request=WorkloadPatchSerializer,
        parameters=[IF_MATCH],
        responses={
            202: WorkloadSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def patch(self, request, tenant, name):
        obj = self.allowed_tenant("workload.update")
        serializer = WorkloadPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        labels = data["metadata"]["labels"] if "metadata" in data else None
        groups = data["spec"]["securityGroups"] if "spec" in data else None

        def change(workload):
            # In change()'s one transaction: a refused half leaves the other unchanged too.
            if labels is not None:
                workload = workload_services.workload_relabel(
                    actor=request.user, workload=workload, labels=labels
                )
            if groups is not None:
                workload = workload_services.workload_groups_set(
                    actor=request.user, workload=workload, groups=groups
                )
            return workload

        return self.change(obj, change)

    @extend_schema(
        operation_id="workloads_delete",
        summary="Delete a workload (accepted; phase Deleting until its pods are gone)",
        parameters=[IF_MATCH],
        responses={202: WorkloadSerializer, 403: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE},
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("workload.delete")
        return self.change(
            obj, lambda w: workload_services.workload_delete(actor=request.user, workload=w)
        )


class WorkloadScaleView(WorkloadView):
    @extend_schema(
        operation_id="workloads_scale",
        summary="Scale a Deployment (the quota is checked for the new replicas)",
        request=ScaleIn,
        parameters=[IF_MATCH],
        responses={
            202: WorkloadSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("workload.operate")
        serializer = ScaleIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        replicas = serializer.validated_data["replicas"]
        return self.change(
            obj,
            lambda w: workload_services.workload_scale(
                actor=request.user, workload=w, replicas=replicas
            ),
        )


class WorkloadRestartView(WorkloadView):
    @extend_schema(
        operation_id="workloads_restart",
        summary="Rollout restart of a Deployment's pods",
        request=None,
        parameters=[IF_MATCH],
        responses={202: WorkloadSerializer, 403: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE},
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("workload.operate")
        return self.change(
            obj, lambda w: workload_services.workload_restart(actor=request.user, workload=w)
        )
