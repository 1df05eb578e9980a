"""REST API for VM pools and their autoscalers (``/api/v1/tenants/<t>/vmpools/...``,
``/api/v1/tenants/<t>/autoscalers/...``).

The conventions of the VM API (``compute.api``): the metadata/spec/status shape,
``Idempotency-Key`` on create, ``If-Match`` on changes, actions as POST subresources
answering 202, problem+json errors whose fields carry the API's dotted paths.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from compute import selectors
from compute.api import IDEMPOTENCY_KEY, PROBLEM_RESPONSE, TenantResourceView
from compute.choices import AutoscalerMetric, PoolPhase, PoolStrategy, RestartPolicy, WarmMode
from compute.models import Autoscaler, VMPool, Workload
from compute.services import autoscalers as autoscaler_services
from compute.services import pools as pool_services
from portal.api.errors import api_field_errors
from portal.api.resources import (
    IF_MATCH,
    StrictSerializer,
    check_if_match,
    label_map_field,
    metadata,
)
from portal.exceptions import ApplicationError
from tenants.api import MetadataSerializer
from tenants.models import Tenant

POOL_FIELDS = {
    "name": "metadata.name",
    "labels": "metadata.labels",
    "image": "spec.template.image",
    "vcpus": "spec.template.vcpus",
    "memory_mib": "spec.template.memoryMiB",
    "disk_gib": "spec.template.diskGiB",
    "restart_policy": "spec.template.restartPolicy",
    "replicas": "spec.replicas",
    "warm": "spec.warm",
    "max_unavailable": "spec.strategy.maxUnavailable",
    "strategy": "spec.strategy.type",
    "warm_mode": "spec.warmMode",
    "paused": "spec.paused",
    "phase": "status.phase",
}
AUTOSCALER_FIELDS = {
    "name": "metadata.name",
    "pool": "spec.scaleTargetRef.name",
    "workload": "spec.scaleTargetRef.name",
    "scale_target": "spec.scaleTargetRef",
    "min_replicas": "spec.minReplicas",
    "max_replicas": "spec.maxReplicas",
    "metric": "spec.metric",
    "target": "spec.targetUtilization",
    "scale_down_window_seconds": "spec.behavior.scaleDown.stabilizationWindowSeconds",
    "scale_down_percent": "spec.behavior.scaleDown.percent",
    "scale_up_pods": "spec.behavior.scaleUp.pods",
    "scale_up_percent": "spec.behavior.scaleUp.percent",
}


def pool_representation(pool: VMPool) -> dict:
    members = getattr(pool, "member_rows", None)  # as the list read them
    if members is None:
        members = list(selectors.pool_members(pool))
    autoscaler = getattr(pool, "autoscaler", None)
    return {
        "metadata": metadata(pool, name=pool.name, tenant=pool.tenant.slug, labels=pool.labels),
        "spec": {
            "replicas": pool.replicas,
            "warm": pool.warm,
            "warmMode": pool.warm_mode,
            "paused": pool.paused,
            "strategy": {
                "type": pool.strategy,
                "maxSurge": 1,
                "maxUnavailable": pool.max_unavailable,
            },
            "template": {
                "image": pool.image.name,
                "vcpus": pool.vcpus,
                "memoryMiB": pool.memory_mib,
                "diskGiB": pool.disk_gib,
                "restartPolicy": pool.restart_policy,
            },
        },
        "status": {
            **{
                key: value
                for key, value in pool_services.pool_state(pool, members).items()
                if key
                not in (
                    "uid",
                    "resourceVersion",
                    "replicas",
                    "warm",
                    "warmMode",
                    "maxUnavailable",
                    "strategy",
                    "paused",
                )
            },
            "observedGeneration": pool.observed_generation,
            "autoscaler": autoscaler.name if autoscaler else None,
        },
    }


def autoscaler_representation(autoscaler: Autoscaler) -> dict:
    state = autoscaler_services.autoscaler_state(autoscaler)
    return {
        "metadata": metadata(autoscaler, name=autoscaler.name, tenant=autoscaler.tenant.slug),
        "spec": {
            "scaleTargetRef": {"kind": autoscaler.target_kind, "name": autoscaler.target_name},
            "minReplicas": autoscaler.min_replicas,
            "maxReplicas": autoscaler.max_replicas,
            "metric": autoscaler.metric,
            "targetUtilization": autoscaler.target,
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": autoscaler.scale_down_window_seconds,
                    "percent": autoscaler.scale_down_percent,
                },
                "scaleUp": {
                    "pods": autoscaler.scale_up_pods,
                    "percent": autoscaler.scale_up_percent,
                },
            },
        },
        "status": {
            **{
                k: v
                for k, v in state.items()
                if k not in ("uid", "resourceVersion", "target", "targetKind")
            },
            "currentReplicas": (
                autoscaler.pool.replicas if autoscaler.pool_id else autoscaler.current_replicas
            ),
        },
    }


# --- Serializers -----------------------------------------------------------------------
class PoolSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, pool: VMPool) -> dict:
        return pool_representation(pool)


class PoolMetadataIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label of at most 56 characters.")
    labels = label_map_field(required=False, help_text="Labels of the pool and its members.")


class PoolTemplateIn(StrictSerializer):
    image = serializers.CharField(help_text="Name of a public image or one of the tenant's.")
    vcpus = serializers.IntegerField()
    memoryMiB = serializers.IntegerField()  # noqa: N815
    diskGiB = serializers.IntegerField(default=0)  # noqa: N815
    restartPolicy = serializers.ChoiceField(  # noqa: N815
        choices=RestartPolicy.choices, default=RestartPolicy.ON_FAILURE
    )


class PoolStrategyIn(StrictSerializer):
    type = serializers.ChoiceField(
        choices=PoolStrategy.choices,
        required=False,
        help_text="rolling (default: a few members at a time) or recreate (every old member "
        "deleted first, then the new ones made).",
    )
    maxUnavailable = serializers.IntegerField(  # noqa: N815
        required=False,
        help_text="Members that may be down at once during a rolling update (default 0; "
        "one extra member is made first when the quota has room).",
    )


class PoolSpecIn(StrictSerializer):
    replicas = serializers.IntegerField(default=1)
    warm = serializers.IntegerField(default=0, help_text="Members kept ready beyond the replicas.")
    warmMode = serializers.ChoiceField(  # noqa: N815
        choices=WarmMode.choices,
        default=WarmMode.STOPPED,
        help_text="stopped (defined and stopped: a scale-up boots them) or paused (booted "
        "and suspended: a scale-up resumes them; charged as running VMs).",
    )
    strategy = PoolStrategyIn(required=False)
    template = PoolTemplateIn()


class PoolTemplatePatchIn(StrictSerializer):
    image = serializers.CharField(required=False)
    vcpus = serializers.IntegerField(required=False)
    memoryMiB = serializers.IntegerField(required=False)  # noqa: N815
    diskGiB = serializers.IntegerField(required=False)  # noqa: N815
    restartPolicy = serializers.ChoiceField(  # noqa: N815
        choices=RestartPolicy.choices, required=False
    )


class PoolPatchSpecIn(StrictSerializer):
    unknown_message = _("This field cannot be changed here (replicas: use the scale action).")

    template = PoolTemplatePatchIn(required=False)
    warm = serializers.IntegerField(required=False)
    warmMode = serializers.ChoiceField(choices=WarmMode.choices, required=False)  # noqa: N815
    paused = serializers.BooleanField(required=False)
    strategy = PoolStrategyIn(required=False)


class PoolPatchSerializer(StrictSerializer):
    spec = PoolPatchSpecIn()


class PoolCreateSerializer(StrictSerializer):
    metadata = PoolMetadataIn()
    spec = PoolSpecIn()


class PoolScaleIn(StrictSerializer):
    replicas = serializers.IntegerField()


class AutoscalerSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, autoscaler: Autoscaler) -> dict:
        return autoscaler_representation(autoscaler)


class TargetRefIn(StrictSerializer):
    kind = serializers.ChoiceField(
        choices=["VMPool", "Deployment"],
        default="VMPool",
        help_text="VMPool (Isotope's controller) or Deployment (a HorizontalPodAutoscaler).",
    )
    name = serializers.CharField(help_text="The VM pool or Deployment workload to scale.")


class ScaleDownIn(StrictSerializer):
    stabilizationWindowSeconds = serializers.IntegerField(required=False)  # noqa: N815
    percent = serializers.IntegerField(required=False)


class ScaleUpIn(StrictSerializer):
    pods = serializers.IntegerField(required=False)
    percent = serializers.IntegerField(required=False)


class BehaviorIn(StrictSerializer):
    scaleDown = ScaleDownIn(required=False)  # noqa: N815
    scaleUp = ScaleUpIn(required=False)  # noqa: N815


class AutoscalerSpecIn(StrictSerializer):
    scaleTargetRef = TargetRefIn()  # noqa: N815
    minReplicas = serializers.IntegerField(  # noqa: N815
        required=False, help_text="Default 1; 0 allowed for a VM pool."
    )
    maxReplicas = serializers.IntegerField()  # noqa: N815
    metric = serializers.ChoiceField(choices=AutoscalerMetric.choices, default="cpu")
    targetUtilization = serializers.IntegerField(help_text="Percent, 1-100.")  # noqa: N815
    behavior = BehaviorIn(required=False)


class AutoscalerMetadataIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label.")


class AutoscalerCreateSerializer(StrictSerializer):
    metadata = AutoscalerMetadataIn()
    spec = AutoscalerSpecIn()


class AutoscalerPatchSpecIn(StrictSerializer):
    unknown_message = _("This field cannot be changed (delete and create another).")

    minReplicas = serializers.IntegerField(required=False)  # noqa: N815
    maxReplicas = serializers.IntegerField(required=False)  # noqa: N815
    metric = serializers.ChoiceField(choices=AutoscalerMetric.choices, required=False)
    targetUtilization = serializers.IntegerField(required=False)  # noqa: N815
    behavior = BehaviorIn(required=False)


class AutoscalerPatchSerializer(StrictSerializer):
    spec = AutoscalerPatchSpecIn()


def _settings(spec: dict) -> dict:
    """The service's settings from an autoscaler spec (absent fields left out)."""
    behavior = spec.get("behavior") or {}
    down, up = behavior.get("scaleDown") or {}, behavior.get("scaleUp") or {}
    found = {
        "min_replicas": spec.get("minReplicas"),
        "max_replicas": spec.get("maxReplicas"),
        "metric": spec.get("metric"),
        "target": spec.get("targetUtilization"),
        "scale_down_window_seconds": down.get("stabilizationWindowSeconds"),
        "scale_down_percent": down.get("percent"),
        "scale_up_pods": up.get("pods"),
        "scale_up_percent": up.get("percent"),
    }
    return {key: value for key, value in found.items() if value is not None}


# --- Views -----------------------------------------------------------------------------
class PoolView(TenantResourceView):
    serializer_class = PoolSerializer
    view_action = "vmpool.view"
    detail_url_name = "vmpool-api-detail"
    collection = "vmpools"
    phases = tuple(PoolPhase.values)

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> VMPool:
        return selectors.pool_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(error, fields=POOL_FIELDS, quota_fields={})


class PoolListView(PoolView):
    @extend_schema(
        operation_id="vmpools_list",
        summary="List the tenant's VM pools",
        responses=PoolSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "phase", OpenApiTypes.STR, enum=PoolPhase.values, description="Filter."
            )
        ],
    )
    def get(self, request, tenant):
        obj = self.tenant("vmpool.view")
        return self.phase_page(selectors.pool_list_rows(request.user, obj))

    @extend_schema(
        operation_id="vmpools_create",
        summary="Create a VM pool (accepted; its members are created asynchronously)",
        request=PoolCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: PoolSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            422: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("vmpool.create")
        serializer = PoolCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.create(obj, lambda: self._create(obj, serializer.validated_data))

    def _create(self, tenant: Tenant, data: dict) -> VMPool:
        meta, spec = data["metadata"], data["spec"]
        template = spec["template"]
        try:
            return pool_services.pool_create(
                actor=self.request.user,
                tenant=tenant,
                name=meta["name"],
                image=template["image"],
                vcpus=template["vcpus"],
                memory_mib=template["memoryMiB"],
                disk_gib=template["diskGiB"],
                restart_policy=template["restartPolicy"],
                replicas=spec["replicas"],
                warm=spec["warm"],
                warm_mode=spec["warmMode"],
                max_unavailable=(spec.get("strategy") or {}).get("maxUnavailable", 0),
                strategy=(spec.get("strategy") or {}).get("type", PoolStrategy.ROLLING),
                labels=meta.get("labels"),
            )
        except ApplicationError as error:
            raise self.api_errors(error) from None


class PoolDetailView(PoolView):
    @extend_schema(operation_id="vmpools_get", summary="One VM pool with its members")
    def get(self, request, tenant, name):
        obj = self.tenant("vmpool.view")
        return self.respond(selectors.pool_get(request.user, obj, name))

    @extend_schema(
        operation_id="vmpools_update",
        summary="Change the template (rolled out member by member), warm members, the "
        "update strategy, or pause/resume the update (accepted)",
        request=PoolPatchSerializer,
        parameters=[IF_MATCH],
        responses={
            202: PoolSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def patch(self, request, tenant, name):
        obj = self.allowed_tenant("vmpool.update")
        serializer = PoolPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = serializer.validated_data["spec"]
        template = spec.get("template") or {}
        return self.change(
            obj,
            lambda pool: pool_services.pool_update(
                actor=request.user,
                pool=pool,
                image=template.get("image"),
                vcpus=template.get("vcpus"),
                memory_mib=template.get("memoryMiB"),
                disk_gib=template.get("diskGiB"),
                restart_policy=template.get("restartPolicy"),
                warm=spec.get("warm"),
                warm_mode=spec.get("warmMode"),
                paused=spec.get("paused"),
                max_unavailable=(spec.get("strategy") or {}).get("maxUnavailable"),
                strategy=(spec.get("strategy") or {}).get("type"),
            ),
        )

    @extend_schema(
        operation_id="vmpools_delete",
        summary="Delete a VM pool with its members (accepted; Deleting until they are gone)",
        parameters=[IF_MATCH],
        responses={202: PoolSerializer, 403: PROBLEM_RESPONSE, 412: PROBLEM_RESPONSE},
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("vmpool.delete")
        return self.change(
            obj, lambda pool: pool_services.pool_delete(actor=request.user, pool=pool)
        )


class PoolScaleView(PoolView):
    @extend_schema(
        operation_id="vmpools_scale",
        summary="Set the number of members (0-100); beyond the quota, what fits is created",
        request=PoolScaleIn,
        parameters=[IF_MATCH],
        responses={
            202: PoolSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("vmpool.scale")
        serializer = PoolScaleIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        replicas = serializer.validated_data["replicas"]
        return self.change(
            obj,
            lambda pool: pool_services.pool_scale(actor=request.user, pool=pool, replicas=replicas),
        )


class AutoscalerView(TenantResourceView):
    serializer_class = AutoscalerSerializer
    view_action = "vmpool.view"
    detail_url_name = "autoscaler-api-detail"
    collection = "autoscalers"

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Autoscaler:
        if lock:
            # Its target's row first, as the target's own changes and deletion lock them
            # (target, then autoscaler): the other order could deadlock with them.
            found = selectors.autoscaler_get(self.request.user, tenant, name)
            if found.workload_id:
                Workload.locked(found.workload_id)
            elif found.pool_id:
                VMPool.locked(found.pool_id)
        return selectors.autoscaler_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(error, fields=AUTOSCALER_FIELDS, quota_fields={})


class AutoscalerListView(AutoscalerView):
    @extend_schema(
        operation_id="autoscalers_list",
        summary="List the tenant's autoscalers",
        responses=AutoscalerSerializer(many=True),
    )
    def get(self, request, tenant):
        obj = self.tenant("vmpool.view")
        page = self.paginate_queryset(selectors.autoscalers_for_tenant(request.user, obj))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="autoscalers_create",
        summary="Attach an autoscaler to a VM pool or a Deployment (one per target)",
        request=AutoscalerCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: AutoscalerSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            422: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("autoscaler.manage")
        serializer = AutoscalerCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.create(obj, lambda: self._create(obj, serializer.validated_data))

    def _create(self, tenant: Tenant, data: dict) -> Autoscaler:
        spec = data["spec"]
        ref = spec["scaleTargetRef"]
        try:
            user, name = self.request.user, ref["name"]
            if ref["kind"] == "Deployment":
                target = {"workload": selectors.workload_get(user, tenant, name)}
            else:
                target = {"pool": selectors.pool_get(user, tenant, name)}
            return autoscaler_services.autoscaler_create(
                actor=self.request.user,
                tenant=tenant,
                name=data["metadata"]["name"],
                **target,
                **_settings(spec),
            )
        except ApplicationError as error:
            raise self.api_errors(error) from None


class AutoscalerDetailView(AutoscalerView):
    @extend_schema(operation_id="autoscalers_get", summary="One autoscaler with its decisions")
    def get(self, request, tenant, name):
        obj = self.tenant("vmpool.view")
        return self.respond(selectors.autoscaler_get(request.user, obj, name))

    @extend_schema(
        operation_id="autoscalers_patch",
        summary="Change an autoscaler's bounds, metric, target or behaviour",
        request=AutoscalerPatchSerializer,
        parameters=[IF_MATCH],
        responses={
            202: AutoscalerSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def patch(self, request, tenant, name):
        obj = self.allowed_tenant("autoscaler.manage")
        serializer = AutoscalerPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = _settings(serializer.validated_data["spec"])
        return self.change(
            obj,
            lambda autoscaler: autoscaler_services.autoscaler_update(
                actor=request.user, autoscaler=autoscaler, **changes
            ),
        )

    @extend_schema(
        operation_id="autoscalers_delete",
        summary="Detach an autoscaler (the pool or Deployment keeps its size)",
        parameters=[IF_MATCH],
        responses={204: None, 403: PROBLEM_RESPONSE, 412: PROBLEM_RESPONSE},
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("autoscaler.manage")
        try:
            with transaction.atomic():
                autoscaler = self.lookup(obj, name, lock=True)
                check_if_match(request, autoscaler)
                autoscaler_services.autoscaler_delete(actor=request.user, autoscaler=autoscaler)
        except ApplicationError as error:
            raise self.api_errors(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
