"""URL patterns for VM and workload pages (under ``/t/<tenant>/``) and their APIs
(under ``/api/v1/``).

``portal.urls`` includes both lists; the paths are SPEC's and stay stable.
"""

from __future__ import annotations

from django.urls import path, re_path

from compute import (  # live migration
    api,
    autoscaler_views,
    backup_api,
    backup_views,
    image_api,
    image_views,
    manifest_views,
    migration_api,
    migration_views,
    network_api,
    network_views,
    pool_api,
    pool_views,
    security_group_api,
    security_group_views,
    service_api,
    service_views,
    snapshot_api,
    snapshot_views,
    views,
    volume_api,
    volume_views,
    workload_api,
    workload_views,
)
from compute.services.vms import ACTIONS
from compute.services.workloads import ACTIONS as WORKLOAD_ACTIONS

_ACTIONS = "|".join(ACTIONS)

vm_pages = [
    path("vms/", views.vm_list, name="vm-list"),
    path("vms/new/", views.vm_create, name="vm-create"),
    path("vms/new/yaml/", manifest_views.vm_create_yaml, name="vm-create-yaml"),
    path("vms/<slug:name>/", views.vm_detail, name="vm-detail"),
    path("vms/<slug:name>/labels/", views.vm_labels, name="vm-labels"),
    path("vms/<slug:name>/migrate/", migration_views.vm_migrate, name="vm-migrate"),
    path("vms/<slug:name>/manifest/", manifest_views.vm_manifest, name="vm-manifest"),
    path(
        "migrations/<uuid:uid>/cancel/", migration_views.migration_cancel, name="migration-cancel"
    ),
    path("vms/<slug:name>/snapshots/", snapshot_views.vm_snapshot_take, name="vm-snapshot-take"),
    path("vms/<slug:name>/clone/", snapshot_views.vm_clone, name="vm-clone"),
    path(
        "vms/<slug:name>/snapshot-schedule/",
        snapshot_views.vm_snapshot_schedule,
        name="vm-snapshot-schedule",
    ),
    re_path(
        r"^vms/(?P<name>[-a-z0-9]+)/snapshots/(?P<snapshot>[-a-z0-9]+)/"
        r"(?P<action>restore|delete)/$",
        snapshot_views.vm_snapshot_action,
        name="vm-snapshot-action",
    ),
    re_path(
        rf"^vms/(?P<name>[-a-zA-Z0-9_]+)/(?P<action>{_ACTIONS})/$",
        views.vm_action,
        name="vm-action",
    ),
]

vm_api = [
    path(
        "tenants/<slug:tenant>/virtualmachines/",
        api.VMListView.as_view(),
        name="vm-api-list",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/",
        api.VMDetailView.as_view(),
        name="vm-api-detail",
    ),
    *(
        path(
            f"tenants/<slug:tenant>/virtualmachines/<slug:name>/{action}/",
            view.as_view(),
            name=f"vm-api-{action}",
        )
        for action, view in api.ACTION_VIEWS.items()
    ),
]

image_pages = [
    path("images/", image_views.image_list, name="image-list"),
    path("images/import/", image_views.image_import, name="image-import"),
    path("images/<slug:name>/delete/", image_views.image_delete, name="image-delete"),
]

image_api_urls = [
    path(
        "tenants/<slug:tenant>/images/",
        image_api.ImageListView.as_view(),
        name="image-api-list",
    ),
    path(
        "tenants/<slug:tenant>/images/<slug:name>/",
        image_api.ImageDetailView.as_view(),
        name="image-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/images/<slug:name>/upload/",
        image_api.ImageUploadView.as_view(),
        name="image-api-upload",
    ),
]

workload_pages = [
    path("workloads/", workload_views.workload_list, name="workload-list"),
    path("workloads/new/", workload_views.workload_create, name="workload-create"),
    path("workloads/new/yaml/", manifest_views.workload_create_yaml, name="workload-create-yaml"),
    path("workloads/<slug:name>/", workload_views.workload_detail, name="workload-detail"),
    path("workloads/<slug:name>/labels/", workload_views.workload_labels, name="workload-labels"),
    path("workloads/<slug:name>/groups/", workload_views.workload_groups, name="workload-groups"),
    path(
        "workloads/<slug:name>/autoscaler/",
        workload_views.workload_autoscaler,
        name="workload-autoscaler",
    ),
    path("workloads/<slug:name>/logs/", workload_views.workload_logs, name="workload-logs"),
    path(
        "workloads/<slug:name>/manifest/",
        manifest_views.workload_manifest,
        name="workload-manifest",
    ),
    re_path(
        rf"^workloads/(?P<name>[-a-z0-9]+)/(?P<action>{'|'.join(WORKLOAD_ACTIONS)})/$",
        workload_views.workload_action,
        name="workload-action",
    ),
]

workload_api_urls = [
    path(
        "tenants/<slug:tenant>/workloads/",
        workload_api.WorkloadListView.as_view(),
        name="workload-api-list",
    ),
    path(
        "tenants/<slug:tenant>/workloads/<slug:name>/",
        workload_api.WorkloadDetailView.as_view(),
        name="workload-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/workloads/<slug:name>/scale/",
        workload_api.WorkloadScaleView.as_view(),
        name="workload-api-scale",
    ),
    path(
        "tenants/<slug:tenant>/workloads/<slug:name>/restart/",
        workload_api.WorkloadRestartView.as_view(),
        name="workload-api-restart",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/migrate/",
        migration_api.VMMigrateView.as_view(),
        name="vm-api-migrate",
    ),
    path(
        "tenants/<slug:tenant>/migrations/",
        migration_api.MigrationListView.as_view(),
        name="migration-api-list",
    ),
    path(
        "tenants/<slug:tenant>/migrations/<uuid:uid>/",
        migration_api.MigrationDetailView.as_view(),
        name="migration-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/migrations/<uuid:uid>/cancel/",
        migration_api.MigrationCancelView.as_view(),
        name="migration-api-cancel",
    ),
]

volume_pages = [
    path("volumes/", volume_views.volume_list, name="volume-list"),
    path("volumes/new/", volume_views.volume_create, name="volume-create"),
    path("volumes/<slug:name>/", volume_views.volume_detail, name="volume-detail"),
    re_path(
        r"^volumes/(?P<name>[-a-z0-9]+)/(?P<action>attach|detach|resize|delete)/$",
        volume_views.volume_action,
        name="volume-action",
    ),
    path("vms/<slug:name>/volumes/", volume_views.vm_volume_attach, name="vm-volume-attach"),
    path("volumes/<slug:name>/clone/", snapshot_views.volume_clone, name="volume-clone"),
    path("volumes/<slug:name>/snapshots/", snapshot_views.snapshot_take, name="snapshot-take"),
    path(
        "volumes/<slug:name>/snapshot-schedule/",
        snapshot_views.volume_snapshot_schedule,
        name="volume-snapshot-schedule",
    ),
    re_path(
        r"^volumes/(?P<name>[-a-z0-9]+)/snapshots/(?P<snapshot>[-a-z0-9]+)/"
        r"(?P<action>restore|delete)/$",
        snapshot_views.snapshot_action,
        name="snapshot-action",
    ),
]

backup_pages = [
    path("backups/", backup_views.backup_list, name="backup-list"),
    path("backups/<slug:name>/restore/", backup_views.backup_restore, name="backup-restore"),
    path(
        "volumes/<slug:name>/snapshots/<slug:snapshot>/backup/",
        backup_views.volume_backup_create,
        name="volume-backup-create",
    ),
    path(
        "backups/<slug:name>/restore-disk/",
        backup_views.backup_restore_disk,
        name="backup-restore-disk",
    ),
    path("backups/<slug:name>/delete/", backup_views.backup_delete, name="backup-delete"),
    path(
        "vms/<slug:name>/snapshots/<slug:snapshot>/backup/",
        backup_views.backup_create,
        name="backup-create",
    ),
]

network_pages = [
    path("networks/", network_views.network_list, name="network-list"),
    path("networks/<slug:name>/delete/", network_views.network_delete, name="network-delete"),
    path("vms/<slug:name>/nics/", network_views.nic_add, name="vm-nic-add"),
    path("vms/<slug:name>/nics/<slug:nic>/remove/", network_views.nic_remove, name="vm-nic-remove"),
    path("vms/<slug:name>/nics/<slug:nic>/groups/", network_views.nic_groups, name="vm-nic-groups"),
    path("services/", service_views.service_list, name="service-list"),
    path("services/<slug:name>/", service_views.service_detail, name="service-detail"),
    path("services/<slug:name>/edit/", service_views.service_update, name="service-update"),
    path("services/<slug:name>/delete/", service_views.service_delete, name="service-delete"),
    path("securitygroups/", security_group_views.group_list, name="securitygroup-list"),
    path(
        "securitygroups/<slug:name>/",
        security_group_views.group_detail,
        name="securitygroup-detail",
    ),
    path(
        "securitygroups/<slug:name>/rules/<int:rule>/remove/",
        security_group_views.rule_remove,
        name="securitygroup-rule-remove",
    ),
    path(
        "securitygroups/<slug:name>/delete/",
        security_group_views.group_delete,
        name="securitygroup-delete",
    ),
]

network_api_urls = [
    path(
        "tenants/<slug:tenant>/networks/",
        network_api.NetworkListView.as_view(),
        name="network-api-list",
    ),
    path(
        "tenants/<slug:tenant>/networks/<slug:name>/",
        network_api.NetworkDetailView.as_view(),
        name="network-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/nics/",
        network_api.NicListView.as_view(),
        name="nic-api-list",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/nics/<slug:nic>/",
        network_api.NicDetailView.as_view(),
        name="nic-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/securitygroups/",
        security_group_api.GroupListView.as_view(),
        name="securitygroup-api-list",
    ),
    path(
        "tenants/<slug:tenant>/securitygroups/<slug:name>/",
        security_group_api.GroupDetailView.as_view(),
        name="securitygroup-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/services/",
        service_api.ServiceListView.as_view(),
        name="service-api-list",
    ),
    path(
        "tenants/<slug:tenant>/services/<slug:name>/",
        service_api.ServiceDetailView.as_view(),
        name="service-api-detail",
    ),
]

volume_api_urls = [
    path(
        "tenants/<slug:tenant>/volumes/",
        volume_api.VolumeListView.as_view(),
        name="volume-api-list",
    ),
    path(
        "tenants/<slug:tenant>/volumes/<slug:name>/",
        volume_api.VolumeDetailView.as_view(),
        name="volume-api-detail",
    ),
    *(
        path(
            f"tenants/<slug:tenant>/volumes/<slug:name>/{action}/",
            view.as_view(),
            name=f"volume-api-{action}",
        )
        for action, view in (
            ("attach", volume_api.VolumeAttachView),
            ("detach", volume_api.VolumeDetachView),
            ("resize", volume_api.VolumeResizeView),
            ("clone", snapshot_api.VolumeCloneView),
        )
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/snapshots/",
        snapshot_api.VMSnapshotListView.as_view(),
        name="vm-snapshot-api-list",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/snapshots/<slug:snapshot>/",
        snapshot_api.VMSnapshotDetailView.as_view(),
        name="vm-snapshot-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/snapshots/<slug:snapshot>/restore/",
        snapshot_api.VMSnapshotRestoreView.as_view(),
        name="vm-snapshot-api-restore",
    ),
    path(
        "tenants/<slug:tenant>/volumes/<slug:name>/snapshotschedule/",
        snapshot_api.VolumeScheduleView.as_view(),
        name="volume-snapshot-schedule-api",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/clone/",
        snapshot_api.VMCloneView.as_view(),
        name="vm-api-clone",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/snapshotschedule/",
        snapshot_api.VMScheduleView.as_view(),
        name="vm-snapshot-schedule-api",
    ),
    path(
        "tenants/<slug:tenant>/volumes/<slug:name>/snapshots/",
        snapshot_api.SnapshotListView.as_view(),
        name="snapshot-api-list",
    ),
    path(
        "tenants/<slug:tenant>/volumes/<slug:name>/snapshots/<slug:snapshot>/",
        snapshot_api.SnapshotDetailView.as_view(),
        name="snapshot-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/volumes/<slug:name>/snapshots/<slug:snapshot>/restore/",
        snapshot_api.SnapshotRestoreView.as_view(),
        name="snapshot-api-restore",
    ),
]

pool_pages = [
    path("vmpools/", pool_views.pool_list, name="vmpool-list"),
    path("vmpools/new/", pool_views.pool_create, name="vmpool-create"),
    path("vmpools/<slug:name>/", pool_views.pool_detail, name="vmpool-detail"),
    path("vmpools/<slug:name>/scale/", pool_views.pool_scale, name="vmpool-scale"),
    path("vmpools/<slug:name>/update/", pool_views.pool_update, name="vmpool-update"),
    path("vmpools/<slug:name>/delete/", pool_views.pool_delete, name="vmpool-delete"),
    path("vmpools/<slug:name>/autoscaler/", pool_views.pool_autoscaler, name="vmpool-autoscaler"),
    path("autoscalers/", autoscaler_views.autoscaler_list, name="autoscaler-list"),
    path("autoscalers/new/", autoscaler_views.autoscaler_create, name="autoscaler-create"),
]

pool_api_urls = [
    path(
        "tenants/<slug:tenant>/vmpools/",
        pool_api.PoolListView.as_view(),
        name="vmpool-api-list",
    ),
    path(
        "tenants/<slug:tenant>/vmpools/<slug:name>/",
        pool_api.PoolDetailView.as_view(),
        name="vmpool-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/vmpools/<slug:name>/scale/",
        pool_api.PoolScaleView.as_view(),
        name="vmpool-api-scale",
    ),
    path(
        "tenants/<slug:tenant>/autoscalers/",
        pool_api.AutoscalerListView.as_view(),
        name="autoscaler-api-list",
    ),
    path(
        "tenants/<slug:tenant>/autoscalers/<slug:name>/",
        pool_api.AutoscalerDetailView.as_view(),
        name="autoscaler-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/backups/",
        backup_api.BackupListView.as_view(),
        name="backup-api-list",
    ),
    path(
        "tenants/<slug:tenant>/backups/<slug:name>/",
        backup_api.BackupDetailView.as_view(),
        name="backup-api-detail",
    ),
    path(
        "tenants/<slug:tenant>/backups/<slug:name>/restore/",
        backup_api.BackupRestoreView.as_view(),
        name="backup-api-restore",
    ),
    path(
        "tenants/<slug:tenant>/backups/<slug:name>/restore-disk/",
        backup_api.BackupRestoreDiskView.as_view(),
        name="backup-api-restore-disk",
    ),
]

# Platform staff pages (outside any tenant).
staff_pages = [
    path("migrations/", migration_views.staff_migrations, name="staff-migrations"),
    path(
        "migrations/state/", migration_views.staff_migrations_state, name="staff-migrations-state"
    ),
    path("hosts/<slug:host>/drain/", migration_views.host_drain, name="host-drain"),
]
