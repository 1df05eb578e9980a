"""REST API for backups.

``/api/v1/tenants/<t>/backups/`` lists backups and makes one from a VM snapshot (202,
``Idempotency-Key``); ``.../backups/<b>/`` reads one and deletes it (admins; 202 with
``If-Match``); ``.../backups/<b>/restore/`` restores it into a new VM (202 with the new
VM and its ``Location``; ``Idempotency-Key``); ``.../backups/<b>/restore-disk/`` restores
one of its disks into a new volume (202 with the volume; ``Idempotency-Key``). Errors are
problem+json; another tenant's backup is 404.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import serializers

from compute import selectors
from compute.api import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    PROBLEM_RESPONSE,
    TenantResourceView,
    VMSerializer,
)
from compute.choices import BackupPhase
from compute.models import Backup
from compute.services import backups as backup_services
from compute.volume_api import VolumeSerializer, VolumeView
from portal.api.errors import api_field_errors
from portal.api.resources import StrictSerializer, metadata
from portal.exceptions import ApplicationError
from tenants import selectors as tenant_selectors
from tenants.api import MetadataSerializer
from tenants.models import Tenant

API_FIELDS = {
    "name": "metadata.name",
    "snapshot": "spec.snapshot",
    "phase": "status.phase",
    "backup": "metadata.name",
}
RESTORE_FIELDS = {
    "name": "name",
    "image": "name",
    "phase": "status.phase",
    "backup": "backup",
}
RESTORE_QUOTA = {"cpu": "name", "memory": "name", "storage": "name", "vms": "name"}


def _z(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def backup_representation(backup: Backup, user) -> dict:
    role = tenant_selectors.role_of(user, backup.tenant)
    return {
        "metadata": metadata(backup, name=backup.name, tenant=backup.tenant.slug),
        "spec": (
            {"vm": backup.vm_name, "snapshot": backup.snapshot_name, "vmSpec": backup.vm_spec}
            if backup_services.is_vm_backup(backup)
            else {"volume": backup_services.backup_source(backup), "snapshot": backup.snapshot_name}
        ),
        "status": {
            "phase": backup.phase,
            "message": backup.message,
            "phaseChanged": _z(backup.phase_changed),
            "progress": backup.progress,
            "sizeBytes": backup.size_bytes,
            "disks": [
                {
                    "device": d["device"],
                    "volume": d["volume"],
                    "sizeGiB": d["sizeGiB"],
                    "format": d.get("format", "qcow2"),
                    "bytes": d["bytes"],
                    "sha256": d["sha256"],
                }
                for d in backup.disks
            ],
            "actions": backup_services.backup_actions(backup, role),
        },
    }


class BackupSerializer(serializers.Serializer):
    metadata = MetadataSerializer()
    spec = serializers.DictField()
    status = serializers.DictField()

    def to_representation(self, backup: Backup) -> dict:
        return backup_representation(backup, self.context["request"].user)


class BackupMetadataIn(StrictSerializer):
    name = serializers.CharField(help_text="A DNS label, unique among the tenant's backups.")


class BackupSpecIn(StrictSerializer):
    vm = serializers.CharField(
        required=False, help_text="The VM whose snapshot is backed up (or give volume)."
    )
    volume = serializers.CharField(
        required=False, help_text="The volume whose own snapshot is backed up (or give vm)."
    )
    snapshot = serializers.CharField(
        help_text="The VM snapshot (all its disks), or the volume's snapshot, to export."
    )

    def validate(self, attrs):
        if ("vm" in attrs) == ("volume" in attrs):
            raise serializers.ValidationError({"vm": [gettext("Give either vm or volume.")]})
        return attrs


class BackupCreateSerializer(StrictSerializer):
    metadata = BackupMetadataIn()
    spec = BackupSpecIn()


class BackupRestoreIn(StrictSerializer):
    name = serializers.CharField(help_text="The new VM's name (a DNS label).")
    start = serializers.BooleanField(
        required=False, default=False, help_text="Start it once its disks are written."
    )


class BackupRestoreDiskIn(StrictSerializer):
    disk = serializers.CharField(help_text="The backed-up disk, by its device (e.g. vdb).")
    name = serializers.CharField(help_text="The new volume's name (a DNS label).")


class BackupView(TenantResourceView):
    serializer_class = BackupSerializer
    view_action = "backup.view"
    detail_url_name = "backup-api-detail"
    collection = "backups"
    phases = tuple(BackupPhase.values)

    def lookup(self, tenant: Tenant, name: str, *, lock: bool = False) -> Backup:
        return selectors.backup_get(self.request.user, tenant, name, lock=lock)

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(error, fields=API_FIELDS, quota_fields={})


class BackupListView(BackupView):
    @extend_schema(
        operation_id="backups_list",
        summary="List the tenant's backups (newest first)",
        responses=BackupSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "phase", OpenApiTypes.STR, enum=BackupPhase.values, description="Filter."
            )
        ],
    )
    def get(self, request, tenant):
        obj = self.tenant("backup.view")
        return self.phase_page(selectors.backups_for_tenant(request.user, obj))

    @extend_schema(
        operation_id="backups_create",
        summary="Back up a VM snapshot: export its disks to the backup directory",
        request=BackupCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: BackupSerializer,
            400: PROBLEM_RESPONSE,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant):
        obj = self.allowed_tenant("backup.create")
        serializer = BackupCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        spec = data["spec"]
        if "vm" in spec:
            vm = selectors.vm_get(request.user, obj, spec["vm"])
        else:
            volume = selectors.volume_get(request.user, obj, spec["volume"])

        def create() -> Backup:
            try:
                if "vm" in spec:
                    return backup_services.backup_create(
                        actor=request.user,
                        vm=vm,
                        snapshot=spec["snapshot"],
                        name=data["metadata"]["name"],
                    )
                return backup_services.volume_backup_create(
                    actor=request.user,
                    volume=volume,
                    snapshot=spec["snapshot"],
                    name=data["metadata"]["name"],
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, create)


class BackupDetailView(BackupView):
    @extend_schema(operation_id="backups_get", summary="One backup")
    def get(self, request, tenant, name):
        obj = self.tenant("backup.view")
        return self.respond(self.lookup(obj, name))

    @extend_schema(
        operation_id="backups_delete",
        summary="Delete a backup's files (accepted; Deleting until gone)",
        parameters=[IF_MATCH],
        responses={
            202: BackupSerializer,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            412: PROBLEM_RESPONSE,
        },
    )
    def delete(self, request, tenant, name):
        obj = self.allowed_tenant("backup.delete")
        return self.change(
            obj, lambda b: backup_services.backup_delete(actor=request.user, backup=b)
        )


class BackupRestoreView(BackupView):
    """``POST .../backups/<b>/restore/``: a new VM from the backup (202 with the new
    VM's ``Location``)."""

    serializer_class = VMSerializer

    @property
    def collection(self) -> str:
        return f"backups/{self.kwargs['name']}/restore"

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(error, fields=RESTORE_FIELDS, quota_fields=RESTORE_QUOTA)

    def location(self, tenant: Tenant, name: str) -> str:
        url = reverse("vm-api-detail", kwargs={"tenant": tenant.slug, "name": name})
        return self.request.build_absolute_uri(url)

    @extend_schema(
        operation_id="backups_restore",
        summary="Restore a backup into a new VM (its files are checked first)",
        request=BackupRestoreIn,
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
        obj = self.allowed_tenant("backup.restore")
        backup = self.lookup(obj, name)
        serializer = BackupRestoreIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def restore():
            try:
                return backup_services.backup_restore(
                    actor=request.user, backup=backup, name=data["name"], start=data["start"]
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, restore)


class BackupRestoreDiskView(VolumeView):
    """``POST .../backups/<b>/restore-disk/``: one backed-up disk into a new volume,
    attached to nothing (202 with the volume's ``Location``)."""

    @property
    def collection(self) -> str:
        return f"backups/{self.kwargs['name']}/restore-disk"

    def api_errors(self, error: ApplicationError) -> ApplicationError:
        return api_field_errors(
            error,
            fields={"name": "name", "disk": "disk", "phase": "status.phase"},
            quota_fields={"storage": "disk"},
        )

    @extend_schema(
        operation_id="backups_restore_disk",
        summary="Restore one disk of a backup into a new volume (its file is checked first)",
        request=BackupRestoreDiskIn,
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
        obj = self.allowed_tenant("backup.restore")
        backup = selectors.backup_get(request.user, obj, name)
        serializer = BackupRestoreDiskIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def restore():
            try:
                return backup_services.backup_restore_disk(
                    actor=request.user, backup=backup, disk=data["disk"], name=data["name"]
                )
            except ApplicationError as error:
                raise self.api_errors(error) from None

        return self.create(obj, restore)
