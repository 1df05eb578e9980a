"""REST API for volumes (``/api/v1/tenants/<t>/volumes/...``).

The same conventions as the VM and workload APIs: the metadata/spec/status shape,
``Idempotency-Key`` on create, ``If-Match`` on changes, actions (``attach``, ``detach``,
``resize``) as POST subresources answering 202, problem+json errors whose fields carry
the API's dotted paths. Where a volume lives (host, pool, file) is shown to staff only.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from compute import selectors
from compute.api import IDEMPOTENCY_KEY, IF_MATCH, PROBLEM_RESPONSE, TenantResourceView
from compute.choices import StorageClass, VolumeFormat, VolumePhase
from compute.models import Volume
from compute.services import volumes as volume_services
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
    "size_gib": "spec.sizeGiB",
    "storage_class": "spec.storageClass",
    "format": "spec.format",
    "image": "spec.image",
    "vm": "spec.attachment.vm",
    "device": "spec.attachment.device",
    "phase": "status.phase",
}


def _api_errors(error: ApplicationError) -> ApplicationError:
    """Service fields as API paths; a storage quota refusal also names ``spec.sizeGiB``."""
    return api_field_errors(error, fields=API_FIELDS, quota_fields={"storage": "spec.sizeGiB"})


def volume_representation(volume: Volume, user) -> dict:
    """The volume as the API shows it to ``user`` (placement for staff only)."""
    role = tenant_selectors.role_of(user, volume.tenant)
    attached = None
    if volume.attached_domain and volume.vm_id and volume.vm.domain_name == volume.attached_domain:
        attached = {"vm": volume.vm.name, "device": volume.attached_device}
    data_status = {
        "phase": volume.phase,
        "message": volume.message,
        "phaseChanged": volume.phase_changed.isoformat().replace("+00:00", "Z"),
        "capacityGiB": volume.capacity_gib,
        "attachedTo": attached,
        "serial": volume.serial,
        "actions": volume_services.allowed_actions(volume, role),
    }
    if volume.storage_class == StorageClass.CLUSTER:
        data_status["claimName"] = volume.backend_name
    if getattr(user, "is_staff", False):
        data_status["host"] = volume.host.name if volume.host_id else None
        data_status["pool"] = volume.pool or None
        data_status["backendName"] = volume.backend_name
        data_status["cluster"] = volume.cluster.name if volume.cluster_id else None
    return {
        "metadata": metadata(
            volume, name=volume.name, tenant=volume.tenant.slug, labels=volume.labels
        ),
        "spec": {
            "sizeGiB": volume.size_gib,
            "storageClass": volume.storage_class,
            "format": volume.format,
            "source": {"kind": volume.created_from, "name": volume.source_name or None},
            "attachment": (
                {"vm": volume.vm.name, "device": volume.device} if volume.vm_id else None
            ),
            "deleteWithVM": volume.delete_with_vm,
        },
        "status": data_status,
    }


# --- Serializers -----------------------------------------------------------------------
class VolumeMetadataIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label: lowercase letters, digits, hyphens.")
    labels = label_map_field(required=False)


class AttachmentIn(StrictSerializer):
    vm = serializers.CharField(help_text="A VM of the same tenant.")
    device = serializers.CharField(
        required=False, allow_blank=True, help_text="vdb…vdz; default: the VM's first free one."
    )


class VolumeSpecIn(StrictSerializer):
    sizeGiB = serializers.IntegerField(help_text="Whole GiB.")  # noqa: N815
    storageClass = serializers.ChoiceField(  # noqa: N815
        choices=StorageClass.choices, default=StorageClass.LOCAL
    )
    format = serializers.ChoiceField(
        choices=VolumeFormat.choices,
        required=False,
        help_text="local: qcow2 (default) or raw; cluster: filesystem.",
    )
    image = serializers.CharField(
        required=False, help_text="A disk image to start from (copy-on-write)."
    )
    attachment = AttachmentIn(
        required=False, help_text="Attach it to this VM once created (placed on its host)."
    )


class VolumeCreateSerializer(StrictSerializer):
    metadata = VolumeMetadataIn()
    spec = VolumeSpecIn()


class ResizeIn(StrictSerializer):
    sizeGiB = serializers.IntegerField(help_text="The new size; more than now.")  # noqa: N815


class VolumeSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, volume: Volume) -> dict:
        return volume_representation(volume, self.context["request"].user)


# --- Views -----------------------------------------------------------------------------
CHANGE_RESPONSES = {
    202: VolumeSerializer,
    400: PROBLEM_RESPONSE,
    403: PROBLEM_RESPONSE,
    404: PROBLEM_RESPONSE,
    409: PROBLEM_RESPONSE,
    412: PROBLEM_RESPONSE,
}


class VolumeView(TenantResourceView):
    serializer_class = VolumeSerializer
    view_action = "volume.view"
    detail_url_name = "volume-api-detail"
    collection = "volumes"
    phases = tuple(VolumePhase.values)

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Volume:
        return selectors.volume_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)

    def vm(self, tenant: Tenant, name: str):
        """The tenant's VM ``name``; another tenant's or a missing one is a 404."""
        return selectors.vm_get(self.request.user, tenant, name)


class VolumeListView(VolumeView):
    @extend_schema(
        operation_id="volumes_list",
        summary="List the tenant's volumes",
        responses=VolumeSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "phase", OpenApiTypes.STR, enum=VolumePhase.values, description="Filter."
            )
        ],
    )
    def get(self, request, tenant):
        obj = self.tenant("volume.view")
        return self.phase_page(selectors.volume_list_rows(request.user, obj))

    @extend_schema(
        operation_id="volumes_create",
        summary="Create a volume (accepted; its storage is made asynchronously)",
        request=VolumeCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: VolumeSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("volume.create")
        serializer = VolumeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return self.create(obj, lambda: self._create(obj, data))

    def _create(self, tenant: Tenant, data: dict) -> Volume:
        spec, meta = data["spec"], data["metadata"]
        attachment = spec.get("attachment")
        try:
            vm = self.vm(tenant, attachment["vm"]) if attachment else None
            return volume_services.volume_create(
                actor=self.request.user,
                tenant=tenant,
                name=meta["name"],
                size_gib=spec["sizeGiB"],
                storage_class=spec["storageClass"],
                format=spec.get("format", ""),
                image=spec.get("image"),
                vm=vm,
                device=(attachment or {}).get("device", ""),
                labels=meta.get("labels"),
            )
        except ApplicationError as error:
            raise _api_errors(error) from None


class VolumeDetailView(VolumeView):
    @extend_schema(operation_id="volumes_get", summary="One volume")
    def get(self, request, tenant, name):
        obj = self.tenant("volume.view")
        return self.respond(selectors.volume_get(request.user, obj, name))

    @extend_schema(
        operation_id="volumes_delete",
        summary="Delete a detached volume and its data (accepted; Deleting until gone)",
        parameters=[IF_MATCH],
        responses=CHANGE_RESPONSES,
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("volume.delete")
        return self.change(
            obj, lambda v: volume_services.volume_delete(actor=request.user, volume=v)
        )


class VolumeAttachView(VolumeView):
    @extend_schema(
        operation_id="volumes_attach",
        summary="Attach to a VM: hot-plugged when it runs, at next start when stopped",
        request=AttachmentIn,
        parameters=[IF_MATCH],
        responses=CHANGE_RESPONSES,
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("volume.attach")
        serializer = AttachmentIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        vm = self.vm(obj, data["vm"])
        return self.change(
            obj,
            lambda v: volume_services.volume_attach(
                actor=request.user, volume=v, vm=vm, device=data.get("device", "")
            ),
        )


class VolumeDetachView(VolumeView):
    @extend_schema(
        operation_id="volumes_detach",
        summary="Detach from its VM (the running guest lets go of it first)",
        request=None,
        parameters=[IF_MATCH],
        responses=CHANGE_RESPONSES,
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("volume.attach")
        return self.change(
            obj, lambda v: volume_services.volume_detach(actor=request.user, volume=v)
        )


class VolumeResizeView(VolumeView):
    @extend_schema(
        operation_id="volumes_resize",
        summary="Grow a volume (never shrink); online when its VM runs",
        request=ResizeIn,
        parameters=[IF_MATCH],
        responses=CHANGE_RESPONSES,
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("volume.resize")
        serializer = ResizeIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        size = serializer.validated_data["sizeGiB"]
        return self.change(
            obj,
            lambda v: volume_services.volume_resize(actor=request.user, volume=v, size_gib=size),
        )
