"""REST API for virtual machines (``/api/v1/tenants/<t>/virtualmachines/...``).

Thin: serializers check types and shape, services decide. Service field errors are
renamed to the API's dotted paths (``memory_mib`` → ``spec.memoryMiB``) so a client sees
the names it sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from compute import selectors
from compute.choices import ConditionStatus, DesiredState, Phase, RestartPolicy
from compute.models import VirtualMachine
from compute.services import idempotency
from compute.services import vms as vm_services
from compute.services.readiness import ready_condition
from portal.api.errors import PROBLEM, ProblemSerializer, api_field_errors, exception_handler
from portal.api.resources import (
    IF_MATCH,
    StrictSerializer,
    check_if_match,
    etag,
    label_map_field,
    metadata,
)
from portal.exceptions import ApplicationError, ValidationError
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.api import MetadataSerializer, TenantScopedView
from tenants.models import Tenant

ACTION_NAMES = ("start", "stop", "force-stop", "pause", "resume", "reboot")

# Service field names → the API's dotted paths.
API_FIELDS = {
    "name": "metadata.name",
    "labels": "metadata.labels",
    "image": "spec.image",
    "flavor": "spec.flavor",
    "vcpus": "spec.vcpus",
    "memory_mib": "spec.memoryMiB",
    "disk_gib": "spec.diskGiB",
    "restart_policy": "spec.restartPolicy",
    "node_selector": "spec.nodeSelector",
    "root_volume": "spec.rootVolume",
    "networks": "spec.networks",
    "desired_state": "spec.desiredState",
    "phase": "status.phase",
}


# Which spec field a quota refusal is about.
QUOTA_FIELDS = {"cpu": "spec.vcpus", "memory": "spec.memoryMiB", "storage": "spec.diskGiB"}


def _api_errors(error: ApplicationError) -> ApplicationError:
    return api_field_errors(error, fields=API_FIELDS, quota_fields=QUOTA_FIELDS)


def vm_representation(vm: VirtualMachine, user) -> dict:
    """The VM as the API shows it to ``user`` (host and the hypervisor's detail behind
    the message for staff only, actions by role)."""
    role = tenant_selectors.role_of(user, vm.tenant)
    vm_status = {
        "phase": vm.phase,
        "message": vm.message,
        "phaseChanged": vm.phase_changed.isoformat().replace("+00:00", "Z"),
        "conditions": [ready_condition(vm)],
        "actions": vm_services.allowed_actions(vm, role),
    }
    if getattr(user, "is_staff", False):
        vm_status["host"] = vm.host.name if vm.host else None
        vm_status["detail"] = vm.detail
    return {
        "metadata": metadata(vm, name=vm.name, tenant=vm.tenant.slug, labels=vm.labels),
        "spec": {
            "vcpus": vm.vcpus,
            "memoryMiB": vm.memory_mib,
            "diskGiB": vm.disk_gib,
            "image": vm.image.name,
            "desiredState": vm.desired_state,
            "restartPolicy": vm.restart_policy,
            "nodeSelector": vm.node_selector,
            "rootVolume": root_volume_name(vm),
        },
        "status": vm_status,
    }


def root_volume_name(vm: VirtualMachine) -> str | None:
    """The name of the volume the VM boots from (its ``vda``), if it has one: from the
    volumes a list prefetched, else one read of that name alone."""
    prefetched = getattr(vm, "_prefetched_objects_cache", {}).get("volumes")
    if prefetched is None:
        return vm.volumes.filter(device="vda").order_by().values_list("name", flat=True).first()
    root = next((v for v in prefetched if v.device == "vda"), None)
    return root.name if root else None


def vm_create_document(vm: VirtualMachine) -> dict:
    """What ``POST .../virtualmachines/`` would take to make a VM like ``vm`` (its labels,
    image, size, policies and networks; a new name; not its root volume, which stays
    with ``vm``): the "Copy as new" of its YAML page."""
    spec = {
        "image": vm.image.name,
        "vcpus": vm.vcpus,
        "memoryMiB": vm.memory_mib,
        "diskGiB": vm.disk_gib,
        # A paused VM's copy starts running; the create takes running or stopped.
        "desiredState": "stopped" if vm.desired_state == DesiredState.STOPPED else "running",
        "restartPolicy": vm.restart_policy,
    }
    if vm.node_selector:
        spec["nodeSelector"] = vm.node_selector
    networks = [nic.network.name for nic in vm.nics.select_related("network").order_by("name")]
    if networks:
        spec["networks"] = networks
    metadata = {"name": f"{vm.name}-copy"}
    if vm.labels:
        metadata["labels"] = vm.labels
    return {"metadata": metadata, "spec": spec}


def vm_create_from_api(*, actor, tenant: Tenant, data: dict) -> VirtualMachine:
    """Create the VM described by ``data`` (``VMCreateSerializer``'s validated data). The
    API's create and the "Create from YAML" page both come here, so they accept and
    refuse alike; service errors name the API's field paths (``spec.memoryMiB``)."""
    spec, meta = data["spec"], data["metadata"]
    try:
        return vm_services.vm_create(
            actor=actor,
            tenant=tenant,
            name=meta["name"],
            image=spec["image"],
            flavor=spec.get("flavor"),
            vcpus=spec.get("vcpus"),
            memory_mib=spec.get("memoryMiB"),
            disk_gib=spec.get("diskGiB"),
            start=spec["desiredState"] == DesiredState.RUNNING,
            restart_policy=spec["restartPolicy"],
            labels=meta.get("labels"),
            node_selector=spec.get("nodeSelector"),
            root_volume=spec.get("rootVolume"),
            networks=spec.get("networks"),
        )
    except ApplicationError as error:
        raise _api_errors(error) from None


# --- Serializers -----------------------------------------------------------------------
class VMSpecSerializer(serializers.Serializer):
    vcpus = serializers.IntegerField()
    memoryMiB = serializers.IntegerField()  # noqa: N815
    diskGiB = serializers.IntegerField()  # noqa: N815
    image = serializers.CharField()
    desiredState = serializers.ChoiceField(choices=DesiredState.choices)  # noqa: N815
    restartPolicy = serializers.ChoiceField(choices=RestartPolicy.choices)  # noqa: N815
    nodeSelector = label_map_field()  # noqa: N815
    rootVolume = serializers.CharField(allow_null=True, help_text="Its root disk's volume.")  # noqa: N815


class ConditionSerializer(serializers.Serializer):
    """A Kubernetes-style condition; VMs and workloads have ``Ready``."""

    type = serializers.CharField()
    status = serializers.ChoiceField(choices=ConditionStatus.choices)
    reason = serializers.CharField()
    message = serializers.CharField()
    lastTransitionTime = serializers.DateTimeField(allow_null=True)  # noqa: N815


class VMStatusSerializer(serializers.Serializer):
    phase = serializers.ChoiceField(choices=Phase.choices)
    message = serializers.CharField()
    phaseChanged = serializers.DateTimeField()  # noqa: N815
    conditions = ConditionSerializer(
        many=True,
        help_text="Ready: the guest is up (its boot banner or guest agent answered), which "
        "comes seconds after the Running phase (the domain started).",
    )
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=list(vm_services.ACTIONS)),
        help_text="The actions your role may take in this phase.",
    )
    host = serializers.CharField(required=False, allow_null=True, help_text="Platform staff only.")


class VMSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = VMSpecSerializer()
    status = VMStatusSerializer()

    def to_representation(self, vm: VirtualMachine) -> dict:
        return vm_representation(vm, self.context["request"].user)


class VMMetadataIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label: lowercase letters, digits, hyphens.")
    labels = label_map_field(required=False)


class VMCreateSpecIn(StrictSerializer):
    required_any_of = (("flavor",), ("vcpus", "memoryMiB"))

    image = serializers.CharField(help_text="Name of a public image or one of the tenant's.")
    flavor = serializers.CharField(
        required=False, help_text="A named size; explicit vcpus/memoryMiB/diskGiB win."
    )
    vcpus = serializers.IntegerField(required=False)
    memoryMiB = serializers.IntegerField(required=False)  # noqa: N815
    diskGiB = serializers.IntegerField(required=False)  # noqa: N815
    desiredState = serializers.ChoiceField(  # noqa: N815
        choices=[DesiredState.RUNNING, DesiredState.STOPPED], default=DesiredState.RUNNING
    )
    restartPolicy = serializers.ChoiceField(  # noqa: N815
        choices=RestartPolicy.choices, default=RestartPolicy.ON_FAILURE
    )
    nodeSelector = label_map_field(required=False)  # noqa: N815
    rootVolume = serializers.CharField(  # noqa: N815
        required=False,
        help_text="Boot from this Ready volume of the tenant (it stays when the VM is deleted); "
        "diskGiB is then its size.",
    )

    networks = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        max_length=8,
        help_text="The tenant's networks to give the VM an interface on (nic0, nic1, … in this "
        "order); without any, one user-mode interface. The first VM brings a 'default' one.",
    )

    def validate(self, attrs):
        if "flavor" not in attrs and ("vcpus" not in attrs or "memoryMiB" not in attrs):
            raise serializers.ValidationError(
                {"vcpus": [_("Give a flavor, or vcpus and memoryMiB.")]}
            )
        return attrs


class VMCreateSerializer(StrictSerializer):
    metadata = VMMetadataIn()
    spec = VMCreateSpecIn()


class VMPatchSpecIn(StrictSerializer):
    unknown_message = _("This field cannot be changed; only desiredState, vcpus and memoryMiB.")

    desiredState = serializers.ChoiceField(  # noqa: N815
        choices=[DesiredState.RUNNING, DesiredState.STOPPED, DesiredState.PAUSED],
        required=False,
    )
    vcpus = serializers.IntegerField(required=False, help_text="Only while Stopped.")
    memoryMiB = serializers.IntegerField(required=False, help_text="Only while Stopped.")  # noqa: N815


class VMPatchMetadataIn(StrictSerializer):
    unknown_message = _("This field cannot be changed; only labels.")

    labels = label_map_field(
        help_text="The VM's new labels, the whole map ({} removes them all), in any phase. "
        "Services select their VM members by label."
    )


class VMPatchSerializer(StrictSerializer):
    metadata = VMPatchMetadataIn(required=False)
    spec = VMPatchSpecIn(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                {"spec": [_("Give metadata.labels, or spec to change.")]}
            )
        return attrs


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="A unique key per create: a retry with the same key and body returns the "
    "first result (within 24 h) and never creates a twin.",
)
PROBLEM_RESPONSE = ProblemSerializer


# --- Views -----------------------------------------------------------------------------
class TenantResourceView(TenantScopedView):
    """Plumbing shared by the VM and workload APIs: role checks, ``If-Match`` changes,
    the phase filter and responses with an ``ETag``. Subclasses name their read action,
    their locked lookup and how service errors map to API field paths."""

    view_action = ""
    # The URL name of one resource and the collection's name (the idempotency scope).
    detail_url_name = ""
    collection = ""
    #: The phases ``?phase=`` accepts.
    phases: tuple[str, ...] = tuple(Phase.values)

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False):
        raise NotImplementedError

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return error

    def require(self, tenant: Tenant, action: str) -> None:
        """403 (audited) when the user's role in ``tenant`` does not allow ``action``."""
        tenant_services.authorize(
            actor=self.request.user, tenant=tenant, permission=action, target=self.request.path
        )

    def respond(self, obj, code: int = status.HTTP_200_OK) -> Response:
        return Response(self.get_serializer(obj).data, status=code, headers={"ETag": etag(obj)})

    def allowed_tenant(self, action: str) -> Tenant:
        """The URL's tenant (404 for non-members), with ``action`` allowed (403)."""
        tenant = self.tenant(self.view_action)
        self.require(tenant, action)
        return tenant

    def change(self, tenant: Tenant, change) -> Response:
        """Lock the object, honour ``If-Match``, apply ``change(obj)`` and answer 202."""
        try:
            with transaction.atomic():
                obj = self.lookup(tenant, self.kwargs["name"], lock=True)
                check_if_match(self.request, obj)
                obj = change(obj)
        except ApplicationError as error:
            raise self.api_errors(error) from None
        return self.respond(obj, status.HTTP_202_ACCEPTED)

    def create(self, tenant: Tenant, create: Callable[[], Any]) -> Response:
        """Run ``create()`` (which validates and saves) and answer 202 with ``Location``.

        With an ``Idempotency-Key`` the first answer (the resource, or a refusal such as
        quota) is remembered and replayed; invalid input is never remembered. The
        ``Location`` is built from the saved resource's name, never from raw input, so a
        name that is no URL segment is the service's field error instead of a crash.
        """
        key = self.request.headers.get("Idempotency-Key")
        if key is None:
            response = self.respond(create(), status.HTTP_202_ACCEPTED)
            response["Location"] = self.location(tenant, response.data["metadata"]["name"])
            return response

        def execute() -> tuple[int, dict]:
            try:
                obj = create()
            except ValidationError:
                raise  # invalid input: nothing started, nothing to remember
            except ApplicationError as error:  # a refusal (quota, placement) is the answer
                response = exception_handler(error, {"request": self.request, "view": self})
                return response.status_code, response.data
            return status.HTTP_202_ACCEPTED, self.get_serializer(obj).data

        outcome = idempotency.idempotent_run(
            user=self.request.user,
            scope=f"{tenant.slug}/{self.collection}",
            key=key,
            fingerprint=idempotency.fingerprint(self.request.data),
            execute=execute,
        )
        response = Response(outcome.body, status=outcome.status_code)
        if outcome.status_code >= 400:
            response.content_type = PROBLEM
        else:
            metadata = outcome.body["metadata"]
            response["ETag"] = f'"{metadata["resourceVersion"]}"'
            response["Location"] = self.location(tenant, metadata["name"])
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    def location(self, tenant: Tenant, name: str) -> str:
        url = reverse(self.detail_url_name, kwargs={"tenant": tenant.slug, "name": name})
        return self.request.build_absolute_uri(url)

    def phase_page(self, queryset) -> Response:
        """One page of ``queryset``, narrowed by ``?phase=`` when given."""
        phase = self.request.query_params.get("phase")
        if phase is not None:
            if phase not in self.phases:
                phases = ", ".join(self.phases)
                raise ValidationError(
                    gettext("Unknown phase."),
                    errors={"phase": [gettext("One of %(phases)s.") % {"phases": phases}]},
                )
            queryset = queryset.filter(phase=phase)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class VMView(TenantResourceView):
    serializer_class = VMSerializer
    view_action = "vm.view"
    detail_url_name = "vm-api-detail"
    collection = "virtualmachines"

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> VirtualMachine:
        return selectors.vm_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)


class VMListView(VMView):
    @extend_schema(
        operation_id="virtualmachines_list",
        summary="List the tenant's virtual machines",
        responses=VMSerializer(many=True),
        parameters=[
            OpenApiParameter("phase", OpenApiTypes.STR, enum=Phase.values, description="Filter.")
        ],
    )
    def get(self, request, tenant):
        obj = self.tenant("vm.view")
        return self.phase_page(selectors.vms_for_tenant(request.user, obj))

    @extend_schema(
        operation_id="virtualmachines_create",
        summary="Create a virtual machine (accepted; it is provisioned asynchronously)",
        request=VMCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: VMSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            422: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("vm.create")
        serializer = VMCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.create(
            obj,
            lambda: vm_create_from_api(
                actor=request.user, tenant=obj, data=serializer.validated_data
            ),
        )


class VMDetailView(VMView):
    @extend_schema(operation_id="virtualmachines_get", summary="One virtual machine")
    def get(self, request, tenant, name):
        obj = self.tenant("vm.view")
        return self.respond(selectors.vm_get(request.user, obj, name))

    @extend_schema(
        operation_id="virtualmachines_patch",
        summary="Change the labels or the desired state, or resize a stopped VM",
        request=VMPatchSerializer,
        parameters=[IF_MATCH],
        responses={
            202: VMSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def patch(self, request, tenant, name):
        obj = self.allowed_tenant("vm.update")
        serializer = VMPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = serializer.validated_data.get("spec", {})
        labels = serializer.validated_data.get("metadata", {}).get("labels")
        return self.change(
            obj,
            lambda vm: vm_services.vm_update(
                actor=request.user,
                vm=vm,
                vcpus=spec.get("vcpus"),
                memory_mib=spec.get("memoryMiB"),
                desired_state=spec.get("desiredState"),
                labels=labels,
            ),
        )

    @extend_schema(
        operation_id="virtualmachines_delete",
        summary="Delete a virtual machine (accepted; phase Deleting until it is gone)",
        parameters=[IF_MATCH],
        responses={202: VMSerializer, 403: PROBLEM_RESPONSE, 409: PROBLEM_RESPONSE},
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("vm.delete")
        return self.change(obj, lambda vm: vm_services.vm_delete(actor=request.user, vm=vm))


class VMActionView(VMView):
    """``POST .../virtualmachines/<name>/<action>/``; subclassed once per action."""

    action_name = ""

    def act(self, request) -> Response:
        obj = self.allowed_tenant(vm_services.ACTIONS[self.action_name].permission)
        return self.change(
            obj,
            lambda vm: vm_services.vm_action(actor=request.user, vm=vm, action=self.action_name),
        )


def _action_view(action: str) -> type[VMActionView]:
    summaries = {
        "start": "Start a stopped or failed VM",
        "stop": "Shut down gracefully (ACPI), forced off after a timeout",
        "force-stop": "Power off at once",
        "pause": "Freeze a running VM",
        "resume": "Unfreeze a paused VM",
        "reboot": "Reboot a running VM",
    }
    decorate = extend_schema(
        operation_id=f"virtualmachines_{action.replace('-', '_')}",
        summary=summaries[action],
        request=None,
        parameters=[IF_MATCH],
        responses={
            202: VMSerializer,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )

    @decorate
    def post(self, request, tenant, name):
        return self.act(request)

    name = "VM" + "".join(part.title() for part in action.split("-")) + "View"
    return type(name, (VMActionView,), {"action_name": action, "post": post})


ACTION_VIEWS: dict[str, type[VMActionView]] = {
    action: _action_view(action) for action in ACTION_NAMES
}
