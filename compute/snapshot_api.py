"""REST API for volume snapshots and clones.

``/api/v1/tenants/<t>/volumes/<v>/snapshots/`` lists and takes snapshots
(``Idempotency-Key``), ``.../snapshots/<s>/`` reads and deletes one (``If-Match``),
``.../snapshots/<s>/restore/`` copies it back over the volume (202; the body must
confirm with the volume's name), and ``/volumes/<v>/clone/`` makes a new, independent
volume (202 with its ``Location``). ``/virtualmachines/<vm>/snapshots/[<s>/[restore/]]``
does the same for all the disks of a stopped VM together. ``.../snapshotschedule/`` of a
volume or a VM reads, sets (``PUT``) and removes its snapshot schedule. Errors are
problem+json. ``/virtualmachines/<vm>/clone/`` makes a new VM with copies of all the
disks of a stopped VM.
"""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from compute import selectors
from compute.api import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    PROBLEM_RESPONSE,
    TenantResourceView,
    VMSerializer,
    VMView,
)
from compute.choices import SnapshotPhase
from compute.models import Snapshot, SnapshotSchedule
from compute.services import clones as clone_services
from compute.services import snapshot_schedules as schedule_services
from compute.services import snapshots as snapshot_services
from compute.volume_api import VolumeSerializer, VolumeView
from portal.api.errors import api_field_errors
from portal.api.resources import StrictSerializer, check_if_match, metadata
from portal.exceptions import ApplicationError, NotFound
from tenants import selectors as tenant_selectors
from tenants.api import MetadataSerializer
from tenants.models import Tenant

API_FIELDS = {"name": "metadata.name", "confirm": "confirm", "phase": "status.phase"}


def _api_errors(error: ApplicationError) -> ApplicationError:
    return api_field_errors(error, fields=API_FIELDS, quota_fields={"storage": "metadata.name"})


def snapshot_representation(snapshot: Snapshot, user) -> dict:
    role = tenant_selectors.role_of(user, snapshot.tenant)
    data_status = {
        "phase": snapshot.phase,
        "message": snapshot.message,
        "phaseChanged": snapshot.phase_changed.isoformat().replace("+00:00", "Z"),
        "restored": snapshot.restored.isoformat().replace("+00:00", "Z")
        if snapshot.restored
        else None,
        "actions": snapshot_services.snapshot_actions(snapshot, role),
    }
    if getattr(user, "is_staff", False):
        data_status["host"] = snapshot.host.name if snapshot.host_id else None
        data_status["pool"] = snapshot.pool or None
        data_status["backendName"] = snapshot.backend_name
    return {
        "metadata": metadata(snapshot, name=snapshot.name, tenant=snapshot.tenant.slug),
        "spec": {"volume": snapshot.volume.name, "sizeGiB": snapshot.size_gib},
        "status": data_status,
    }


class SnapshotMetadataIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label, unique among the volume's snapshots.")


class SnapshotCreateSerializer(StrictSerializer):
    metadata = SnapshotMetadataIn()


class VMSnapshotSpecIn(StrictSerializer):
    memory = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Also save the running VM's memory state: restoring the snapshot then "
        "resumes the guest where it was instead of booting it (hosts that can; charged to "
        "the storage quota at the VM's memory size).",
    )


class VMSnapshotCreateSerializer(StrictSerializer):
    metadata = SnapshotMetadataIn()
    spec = VMSnapshotSpecIn(required=False)


class RestoreIn(StrictSerializer):
    confirm = serializers.CharField(
        help_text="The volume's name: its current data is replaced by the snapshot's."
    )


class CloneIn(StrictSerializer):
    name = serializers.CharField(help_text="The new volume's name (a DNS label).")
    snapshot = serializers.CharField(
        required=False,
        default="",
        help_text="Copy this Ready snapshot of the volume instead of its data now "
        "(the volume may then be in use).",
    )


class SnapshotSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, snapshot: Snapshot) -> dict:
        return snapshot_representation(snapshot, self.context["request"].user)


CHANGE_RESPONSES = {
    202: SnapshotSerializer,
    400: PROBLEM_RESPONSE,
    403: PROBLEM_RESPONSE,
    404: PROBLEM_RESPONSE,
    409: PROBLEM_RESPONSE,
    412: PROBLEM_RESPONSE,
}


class SnapshotView(TenantResourceView):
    serializer_class = SnapshotSerializer
    view_action = "volume.view"
    detail_url_name = "snapshot-api-detail"
    phases = tuple(SnapshotPhase.values)

    @property
    def collection(self) -> str:
        return f"volumes/{self.kwargs['name']}/snapshots"

    def volume(self, tenant: Tenant):
        return selectors.volume_get(self.request.user, tenant, self.kwargs["name"])

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Snapshot:
        volume = self.volume(tenant)
        return selectors.snapshot_get(self.request.user, volume, self.kwargs["snapshot"], lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)

    def location(self, tenant: Tenant, name: str) -> str:
        url = reverse(
            self.detail_url_name,
            kwargs={"tenant": tenant.slug, "name": self.kwargs["name"], "snapshot": name},
        )
        return self.request.build_absolute_uri(url)


class SnapshotListView(SnapshotView):
    @extend_schema(
        operation_id="snapshots_list",
        summary="List a volume's snapshots (newest first)",
        responses=SnapshotSerializer(many=True),
    )
    def get(self, request, tenant, name):
        obj = self.tenant("volume.view")
        return self.phase_page(selectors.snapshots_for_volume(request.user, self.volume(obj)))

    @extend_schema(
        operation_id="snapshots_create",
        summary="Take a snapshot: a full copy of the volume (detached, or its VM stopped)",
        request=SnapshotCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: SnapshotSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("snapshot.create")
        volume = self.volume(obj)
        serializer = SnapshotCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        snapshot_name = serializer.validated_data["metadata"]["name"]

        def take() -> Snapshot:
            try:
                return snapshot_services.snapshot_create(
                    actor=request.user, volume=volume, name=snapshot_name
                )
            except ApplicationError as error:
                raise _api_errors(error) from None

        return self.create(obj, take)


class SnapshotDetailView(SnapshotView):
    @extend_schema(operation_id="snapshots_get", summary="One snapshot")
    def get(self, request, tenant, name, snapshot):
        obj = self.tenant("volume.view")
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        operation_id="snapshots_delete",
        summary="Delete a snapshot's copy (accepted; Deleting until gone)",
        parameters=[IF_MATCH],
        responses=CHANGE_RESPONSES,
    )
    def delete(self, request, tenant, name, snapshot):
        obj = self.allowed_tenant("snapshot.delete")
        return self.change(
            obj, lambda s: snapshot_services.snapshot_delete(actor=request.user, snapshot=s)
        )


class SnapshotRestoreView(SnapshotView):
    @extend_schema(
        operation_id="snapshots_restore",
        summary="Restore: copy the snapshot back over its volume (its VM stopped)",
        request=RestoreIn,
        parameters=[IF_MATCH],
        responses=CHANGE_RESPONSES,
    )
    def post(self, request, tenant, name, snapshot):
        obj = self.allowed_tenant("snapshot.restore")
        serializer = RestoreIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        confirm = serializer.validated_data["confirm"]
        return self.change(
            obj,
            lambda s: snapshot_services.snapshot_restore(
                actor=request.user, snapshot=s, confirm=confirm
            ),
        )


class VolumeCloneView(VolumeView):
    @extend_schema(
        operation_id="volumes_clone",
        summary="Clone a volume, or one of its snapshots: a new, independent full copy",
        request=CloneIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: VolumeSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("volume.clone")
        source = self.lookup(obj, name)
        serializer = CloneIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        new_name = serializer.validated_data["name"]
        snapshot = serializer.validated_data["snapshot"]

        def clone():
            try:
                return snapshot_services.volume_clone(
                    actor=request.user, volume=source, name=new_name, snapshot=snapshot
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, clone)


# --- Snapshots of a VM (its disks together) ----------------------------------------------
def vm_snapshot_representation(group: snapshot_services.VMSnapshot, user) -> dict:
    role = tenant_selectors.role_of(user, group.vm.tenant)
    allowed = {a for s in group.disks for a in snapshot_services.snapshot_actions(s, role)}
    return {
        "metadata": {
            "name": group.name,
            "vm": group.vm.name,
            "created": group.created.isoformat().replace("+00:00", "Z"),
            "resourceVersion": str(group.resource_version),
        },
        "spec": {
            "disks": [
                {"volume": s.volume.name, "device": s.volume.device, "sizeGiB": s.size_gib}
                for s in group.disks
            ],
            "live": group.live,
            "memory": group.memory is not None,
            "memoryGiB": group.memory.memory_gib if group.memory is not None else 0,
        },
        "status": {
            "phase": group.phase,
            "quiesced": group.quiesced,
            "disks": [{"volume": s.volume.name, "phase": s.phase} for s in group.disks],
            "actions": [a for a in ("restore", "delete") if a in allowed],
        },
    }


class VMSnapshotSerializer(serializers.Serializer):
    metadata = serializers.DictField()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, group) -> dict:
        return vm_snapshot_representation(group, self.context["request"].user)


VM_CHANGE_RESPONSES = {
    202: VMSnapshotSerializer,
    400: PROBLEM_RESPONSE,
    403: PROBLEM_RESPONSE,
    404: PROBLEM_RESPONSE,
    409: PROBLEM_RESPONSE,
}


class VMSnapshotView(TenantResourceView):
    """A VM's snapshots: the snapshots of its disks taken together under one name (no
    ``If-Match``: they are several rows, each with its own resourceVersion)."""

    serializer_class = VMSnapshotSerializer
    view_action = "vm.view"
    detail_url_name = "vm-snapshot-api-detail"

    @property
    def collection(self) -> str:
        return f"virtualmachines/{self.kwargs['name']}/snapshots"

    def vm(self, tenant: Tenant):
        return selectors.vm_get(self.request.user, tenant, self.kwargs["name"])

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False):
        vm = self.vm(tenant)
        found = snapshot_services.vm_snapshots(vm, self.kwargs["snapshot"])
        if not found:
            raise NotFound(
                gettext("Snapshot %(name)s of %(vm)s not found.")
                % {"name": repr(self.kwargs["snapshot"]), "vm": vm.name}
            )
        return found[0]

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return _api_errors(error)

    def location(self, tenant: Tenant, name: str) -> str:
        url = reverse(
            self.detail_url_name,
            kwargs={"tenant": tenant.slug, "name": self.kwargs["name"], "snapshot": name},
        )
        return self.request.build_absolute_uri(url)

    def run(self, call) -> Response:
        try:
            group = call()
        except ApplicationError as error:
            raise self.api_errors(error) from None
        return self.respond(group, status.HTTP_202_ACCEPTED)


class VMSnapshotListView(VMSnapshotView):
    @extend_schema(
        operation_id="vm_snapshots_list",
        summary="List a VM's snapshots (each: its disks' snapshots taken together)",
        responses=VMSnapshotSerializer(many=True),
    )
    def get(self, request, tenant, name):
        obj = self.tenant("vm.view")
        page = self.paginate_queryset(snapshot_services.vm_snapshots(self.vm(obj)))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="vm_snapshots_create",
        summary="Snapshot every disk of a VM together (stopped, or live: with its memory "
        "state if asked)",
        request=VMSnapshotCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses=VM_CHANGE_RESPONSES,
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("snapshot.create")
        vm = self.vm(obj)
        serializer = VMSnapshotCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        snapshot_name = serializer.validated_data["metadata"]["name"]
        memory = serializer.validated_data.get("spec", {}).get("memory", False)

        def take():
            try:
                return snapshot_services.vm_snapshot_create(
                    actor=request.user, vm=vm, name=snapshot_name, memory=memory
                )
            except ApplicationError as error:
                raise _api_errors(error) from None

        return self.create(obj, take)


class VMSnapshotDetailView(VMSnapshotView):
    @extend_schema(operation_id="vm_snapshots_get", summary="One snapshot of a VM")
    def get(self, request, tenant, name, snapshot):
        obj = self.tenant("vm.view")
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        operation_id="vm_snapshots_delete",
        summary="Delete the snapshots of a VM's disks taken together",
        responses=VM_CHANGE_RESPONSES,
    )
    def delete(self, request, tenant, name, snapshot):
        obj = self.allowed_tenant("snapshot.delete")
        vm = self.vm(obj)
        return self.run(
            lambda: snapshot_services.vm_snapshot_delete(actor=request.user, vm=vm, name=snapshot)
        )


class VMSnapshotRestoreView(VMSnapshotView):
    @extend_schema(
        operation_id="vm_snapshots_restore",
        summary="Restore every disk of a stopped VM from the snapshot",
        request=RestoreIn,
        responses=VM_CHANGE_RESPONSES,
    )
    def post(self, request, tenant, name, snapshot):
        obj = self.allowed_tenant("snapshot.restore")
        vm = self.vm(obj)
        serializer = RestoreIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        confirm = serializer.validated_data["confirm"]
        return self.run(
            lambda: snapshot_services.vm_snapshot_restore(
                actor=request.user, vm=vm, name=snapshot, confirm=confirm
            )
        )


# --- Snapshot schedules (of a volume, or of a VM's disks together) -----------------------
SCHEDULE_FIELDS = {
    "interval_hours": "spec.intervalHours",
    "daily_at": "spec.dailyAt",
    "keep": "spec.keep",
    "volume": "spec.target",
}


def schedule_representation(schedule) -> dict:
    owner = schedule.volume or schedule.vm
    state = schedule_services.schedule_state(schedule)
    return {
        "metadata": metadata(schedule, name=owner.name, tenant=schedule.tenant.slug),
        "spec": {
            "target": {"kind": "volume" if schedule.volume_id else "vm", "name": owner.name},
            **{k: state[k] for k in ("intervalHours", "dailyAt", "keep", "enabled")},
        },
        "status": {k: state[k] for k in ("nextRun", "lastRun", "lastResult", "lastMessage")},
    }


class ScheduleSpecIn(StrictSerializer):
    intervalHours = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Take one every this many hours (1–168); or dailyAt.",
    )
    dailyAt = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Take one every day at this time, HH:MM UTC; or intervalHours.",
    )
    keep = serializers.IntegerField(
        help_text="How many of this schedule's snapshots to keep (1–50); older ones are "
        "deleted. Snapshots taken by hand are never deleted by a schedule."
    )
    enabled = serializers.BooleanField(required=False, default=True)


class ScheduleIn(StrictSerializer):
    spec = ScheduleSpecIn()


class ScheduleSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, schedule) -> dict:
        return schedule_representation(schedule)


class ScheduleView(TenantResourceView):
    """``GET`` the schedule, ``PUT`` it (create or replace; ``If-Match`` when it exists),
    ``DELETE`` it (the snapshots it took stay)."""

    serializer_class = ScheduleSerializer
    #: "volume" or "vm": what the URL's ``name`` is.
    target = ""

    @property
    def view_action(self) -> str:
        return f"{self.target}.view"

    def owner(self, tenant: Tenant):
        get = selectors.volume_get if self.target == "volume" else selectors.vm_get
        return get(self.request.user, tenant, self.kwargs["name"])

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False):
        owner = self.owner(tenant)
        queryset = SnapshotSchedule.objects.filter(**{self.target: owner}).select_related(
            "tenant", "volume", "vm"
        )
        if lock:
            queryset = queryset.select_for_update(of=("self",))
        schedule = queryset.first()
        if schedule is None:
            raise NotFound(gettext("%(name)s has no snapshot schedule.") % {"name": owner.name})
        return schedule

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(error, fields=SCHEDULE_FIELDS, quota_fields={})

    def get_object(self):
        # DRF's OPTIONS answer asks for the object a PUT would replace; a PUT may create
        # it, and the answer describes the input either way.
        return None

    @extend_schema(
        summary="The snapshot schedule", responses={200: ScheduleSerializer, 404: PROBLEM_RESPONSE}
    )
    def get(self, request, tenant, name):
        obj = self.tenant(self.view_action)
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        summary="Set the snapshot schedule (create or replace)",
        request=ScheduleIn,
        parameters=[IF_MATCH],
        responses={
            200: ScheduleSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def put(self, request, tenant, name):
        obj = self.allowed_tenant("snapshot.schedule")
        owner = self.owner(obj)
        serializer = ScheduleIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = serializer.validated_data["spec"]
        try:
            with transaction.atomic():
                current = (
                    SnapshotSchedule.objects.select_for_update(of=("self",))
                    .filter(**{self.target: owner})
                    .first()
                )
                if current is not None:
                    check_if_match(request, current)
                schedule = schedule_services.snapshot_schedule_set(
                    actor=request.user,
                    **{self.target: owner},
                    interval_hours=spec.get("intervalHours"),
                    daily_at=spec.get("dailyAt"),
                    keep=spec["keep"],
                    enabled=spec.get("enabled", True),
                )
        except ApplicationError as error:
            raise self.api_errors(error) from None
        return self.respond(schedule)

    @extend_schema(
        summary="Remove the snapshot schedule (its snapshots stay)",
        parameters=[IF_MATCH],
        responses={
            204: None,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("snapshot.schedule")
        try:
            with transaction.atomic():
                schedule = self.lookup(obj, name, lock=True)
                check_if_match(request, schedule)
                schedule_services.snapshot_schedule_delete(actor=request.user, schedule=schedule)
        except ApplicationError as error:
            raise self.api_errors(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class VolumeScheduleView(ScheduleView):
    target = "volume"

    @extend_schema(operation_id="volume_snapshot_schedule_get")
    def get(self, request, tenant, name):
        return super().get(request, tenant, name)

    @extend_schema(operation_id="volume_snapshot_schedule_set")
    def put(self, request, tenant, name):
        return super().put(request, tenant, name)

    @extend_schema(operation_id="volume_snapshot_schedule_delete")
    def delete(self, request, tenant, name):
        return super().delete(request, tenant, name)


class VMScheduleView(ScheduleView):
    target = "vm"

    @extend_schema(operation_id="vm_snapshot_schedule_get")
    def get(self, request, tenant, name):
        return super().get(request, tenant, name)

    @extend_schema(operation_id="vm_snapshot_schedule_set")
    def put(self, request, tenant, name):
        return super().put(request, tenant, name)

    @extend_schema(operation_id="vm_snapshot_schedule_delete")
    def delete(self, request, tenant, name):
        return super().delete(request, tenant, name)


# --- Clone a whole VM --------------------------------------------------------------------
class VMCloneIn(StrictSerializer):
    name = serializers.CharField(help_text="The new VM's name (a DNS label).")
    start = serializers.BooleanField(
        required=False, default=False, help_text="Start the clone once its disks are copied."
    )
    snapshot = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Copy the disks from this snapshot of the VM (Ready) instead of its "
        "current disks; the VM may then be running.",
    )
    flavor = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Give the clone this flavor's size (vCPUs, memory, and its disk when "
        "larger than the source's root disk); explicit vcpus/memoryMiB/diskGiB win.",
    )
    vcpus = serializers.IntegerField(required=False, help_text="Default: the source's.")
    memoryMiB = serializers.IntegerField(  # noqa: N815
        required=False, help_text="Default: the source's."
    )
    diskGiB = serializers.IntegerField(  # noqa: N815
        required=False,
        help_text="The clone's root disk, at least the source's (disks only grow; a "
        "smaller one is a 400). Default: the source's, or the flavor's when larger.",
    )


class VMCloneView(VMView):
    """``POST .../virtualmachines/<vm>/clone/``: a new VM with copies of all the
    stopped VM's disks (202 with the new VM's ``Location``)."""

    @property
    def collection(self) -> str:
        return f"virtualmachines/{self.kwargs['name']}/clone"

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(
            error,
            fields={
                "name": "name",
                "vm": "vm",
                "phase": "status.phase",
                "snapshot": "snapshot",
                "flavor": "flavor",
                "vcpus": "vcpus",
                "memory_mib": "memoryMiB",
                "disk_gib": "diskGiB",
            },
            quota_fields={"cpu": "name", "memory": "name", "storage": "name", "vms": "name"},
        )

    @extend_schema(
        operation_id="virtualmachines_clone",
        summary="Clone a VM: a new VM with full copies of all its disks (of the stopped VM, "
        "or of one of its snapshots), of the same size or another (a flavor, vCPUs, memory, "
        "a larger root disk)",
        request=VMCloneIn,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: VMSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant, name):
        obj = self.allowed_tenant("vm.create")
        source = self.lookup(obj, name)
        serializer = VMCloneIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def clone():
            try:
                return clone_services.vm_clone(
                    actor=request.user,
                    vm=source,
                    name=data["name"],
                    start=data["start"],
                    snapshot=data["snapshot"] or None,
                    flavor=data["flavor"] or None,
                    vcpus=data.get("vcpus"),
                    memory_mib=data.get("memoryMiB"),
                    disk_gib=data.get("diskGiB"),
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, clone)
