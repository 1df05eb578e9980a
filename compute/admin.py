"""Django admin for hosts, images, flavors, (read-mostly) virtual machines, Kubernetes
clusters, tenant namespaces, (read-only) workloads, and backups (read-only; deleted
through the backup service)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from compute.models import (
    Autoscaler,
    Backup,
    Flavor,
    Host,
    Image,
    KubernetesCluster,
    Migration,
    MigrationPolicy,
    Network,
    NetworkInterface,
    SecurityGroup,
    SecurityGroupRule,
    Service,
    TenantNamespace,
    VirtualMachine,
    VMPool,
    Volume,
    Workload,
)
from compute.services.clusters import cluster_check, cluster_set_kubeconfig, default_clear
from compute.services.hosts import host_check, host_uri_check
from portal.admin import AuditedModelAdmin, AuditedModelForm, ServiceDeleteMixin
from portal.exceptions import ValidationError as AppValidationError
from portal.exceptions import plain_number


class HostAdminForm(AuditedModelForm):
    """The URI is checked by ``host_uri_check``: no transport that runs commands or
    reads files on the portal host."""

    class Meta:
        model = Host
        fields = "__all__"  # noqa: DJ007 - HostAdmin (readonly_fields) decides what is shown

    def clean_uri(self) -> str:
        try:
            return host_uri_check(self.cleaned_data.get("uri", ""))
        except AppValidationError as error:
            raise forms.ValidationError(error.errors["uri"][0]) from None


@admin.register(Host)
class HostAdmin(AuditedModelAdmin):
    audit_noun = "host"
    form = HostAdminForm
    list_display = [
        "name",
        "uri",
        "reachable",
        "enabled",
        "maintenance",
        "vcpus_placed",
        "memory_placed",
        "vms_placed",
        "effective_virt_type",
        "console_ports",
        "last_seen",
    ]
    list_filter = ["enabled", "maintenance", "reachable", "virt_type"]
    search_fields = ["name", "uri"]
    readonly_fields = [
        "cpus",
        "memory_mib",
        "reachable",
        "last_seen",
        "message",
        "capabilities",
        "effective_virt_type",
        "storage_gib",
        "vcpus_placed",
        "memory_placed",
        "vms_placed",
    ]
    actions = ["check_now"]

    @admin.display(description=_("vCPUs placed"))
    def vcpus_placed(self, obj: Host) -> str:
        """What the scheduler counts here (VMs migrating here included) against what it
        may place (CPUs × ratio): the host's counters, no query per row."""
        return f"{obj.placed_vcpus} / {plain_number(obj.vcpu_capacity)}"

    @admin.display(description=_("memory placed (MiB)"))
    def memory_placed(self, obj: Host) -> str:
        return f"{obj.placed_memory_mib} / {plain_number(obj.memory_capacity)}"

    @admin.display(description=_("VMs"))
    def vms_placed(self, obj: Host) -> int:
        return obj.placed_vms

    @admin.display(description=_("Console ports"))
    def console_ports(self, obj: Host) -> str:
        return f"{obj.vnc_port_min}–{obj.vnc_port_max}"

    @admin.action(description=_("Check now (capacity, reachability, the volume pool)"))
    def check_now(self, request, queryset):
        for host in queryset:
            host = host_check(host, actor=request.user)
            if host.reachable:
                self.message_user(
                    request,
                    gettext(
                        "%(host)s: reachable, %(cpus)s CPUs, %(memory)s MiB, "
                        "guests run as %(virt_type)s; %(storage)s"
                    )
                    % {
                        "host": host.name,
                        "cpus": host.cpus,
                        "memory": host.memory_mib,
                        "virt_type": host.effective_virt_type,
                        "storage": (
                            gettext("volume pool at %(path)s (%(gib)s GiB).")
                            % {"path": host.volume_path, "gib": host.storage_gib}
                            if host.can("volumes")
                            else (host.message or gettext("no volume storage."))
                        ),
                    },
                    messages.SUCCESS if host.can("volumes") else messages.WARNING,
                )
            else:
                self.message_user(request, f"{host.name}: {host.message}", messages.ERROR)

    def save_model(self, request, obj, form, change):
        # A change writes only the fields edited on the page, compared with what the page
        # showed (AuditedModelAdmin): reachability and capacity are observed by tasks,
        # maintenance is set by drains, and other admins save, while this form is open.
        super().save_model(request, obj, form, change)
        host_check(obj, actor=request.user)


@admin.register(Image)
class ImageAdmin(ServiceDeleteMixin, AuditedModelAdmin):
    """Platform images are edited here; tenants' imported images are read-only apart
    from publishing (audited) and deletion, which go through ``compute.services.images``
    (file removed, storage released)."""

    audit_noun = "image"
    list_display = [
        "name",
        "display_name",
        "kind",
        "tenant",
        "public",
        "phase",
        "source",
        "size_bytes",
        "os_label",
    ]
    list_filter = ["kind", "public", "phase", "source"]
    search_fields = ["name", "display_name", "os_label", "tenant__slug"]
    actions = ["publish", "unpublish"]
    IMPORT_FIELDS = [
        "phase",
        "message",
        "source",
        "source_url",
        "expected_sha256",
        "sha256",
        "declared_bytes",
        "upload_offset",
        "source_format",
        "size_bytes",
        "virtual_size_bytes",
        "attempts",
        "created_by",
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.imported:
            # The file and its checks are the import's; only the labels may change.
            editable = {"display_name", "os_label", "min_memory_mib"}
            return [f.name for f in Image._meta.fields if f.name not in editable]
        return self.IMPORT_FIELDS

    def _set_public(self, request, queryset, public: bool) -> None:
        from compute.services.images import image_publish
        from portal.exceptions import ApplicationError

        for image in queryset:
            try:
                image = image_publish(actor=request.user, image=image, public=public)
            except ApplicationError as error:
                self.message_user(request, f"{image.name}: {error.message}", messages.ERROR)
            else:
                said = (
                    gettext("%(image)s is public.")
                    if image.public
                    else gettext("%(image)s is private to its tenant.")
                )
                self.message_user(request, said % {"image": image.name}, messages.SUCCESS)

    @admin.action(description=_("Publish to every tenant (tenant images, Ready)"))
    def publish(self, request, queryset):
        self._set_public(request, queryset, True)

    @admin.action(description=_("Make private to its tenant again"))
    def unpublish(self, request, queryset):
        self._set_public(request, queryset, False)

    def delete_through(self, request, obj) -> str | None:
        if not obj.imported:
            AuditedModelAdmin.delete_model(self, request, obj)
            return None
        from compute.services.images import image_delete

        image_delete(actor=request.user, image=obj)
        return None

    def delete_label(self, obj) -> str:
        return obj.name


@admin.register(Flavor)
class FlavorAdmin(AuditedModelAdmin):
    audit_noun = "flavor"
    list_display = ["name", "vcpus", "memory_mib", "disk_gib"]


@admin.register(VirtualMachine)
class VirtualMachineAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "phase", "desired_state", "host", "vcpus", "memory_mib"]
    list_filter = ["phase", "desired_state", "host", "tenant"]
    search_fields = ["name", "tenant__slug", "backend_id"]
    readonly_fields = [f.name for f in VirtualMachine._meta.fields]

    def has_add_permission(self, request):
        return False  # VMs are created by tenants, through quota and the scheduler

    def has_delete_permission(self, request, obj=None):
        return False  # deletion goes through vm_delete (volumes, quota)


@admin.register(MigrationPolicy)
class MigrationPolicyAdmin(AuditedModelAdmin):
    audit_noun = "migrationpolicy"
    """Cluster defaults (no host) and per-host overrides of live-migration limits."""

    list_display = [
        "__str__",
        "bandwidth_mib",
        "completion_timeout_per_gib",
        "progress_timeout",
        "max_downtime_ms",
        "auto_converge",
        "post_copy",
        "max_parallel",
        "max_outbound",
    ]


@admin.register(Migration)
class MigrationAdmin(admin.ModelAdmin):
    """Read-only history of live migrations: not added, changed or deleted here."""

    list_display = ["vm_name", "tenant", "source", "target", "phase", "created", "reason"]
    list_filter = ["phase", "source", "target"]
    search_fields = ["vm_name", "tenant__slug"]
    readonly_fields = ["detail"]  # the hypervisor's words behind a failure (staff only)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # History (and a running migration's state, which its task and the VM's
        # placement read): it goes with its tenant, never one row at a time.
        return False


# --- Kubernetes -------------------------------------------------------------------------
class KubernetesClusterForm(AuditedModelForm):
    """The kubeconfig is write-only: typed in to set or replace it, never shown back."""

    instance_fields = {"kubeconfig": ("kubeconfig_encrypted", "server")}

    kubeconfig = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_(
            "Paste a kubeconfig to set or replace the stored one (kept encrypted; "
            "referenced certificate files are embedded). Leave empty to keep the current one."
        ),
    )

    class Meta:
        model = KubernetesCluster
        fields = ["name", "default", "enabled"]

    def clean(self):
        data = super().clean()
        text = data.get("kubeconfig") or ""
        if not text and not (self.instance and self.instance.kubeconfig_encrypted):
            self.add_error("kubeconfig", gettext("A new cluster needs its kubeconfig."))
        elif text:
            try:
                cluster_set_kubeconfig(self.instance, text)
            except (AppValidationError, OSError) as error:
                self.add_error("kubeconfig", getattr(error, "message", str(error)))
        return data


@admin.register(KubernetesCluster)
class KubernetesClusterAdmin(AuditedModelAdmin):
    audit_noun = "cluster"
    form = KubernetesClusterForm
    list_display = [
        "name",
        "server",
        "default",
        "enabled",
        "reachable",
        "version",
        "capacity_summary",
        "workload_count",
        "last_seen",
    ]
    list_filter = ["enabled", "reachable", "default"]
    search_fields = ["name", "server"]
    readonly_fields = [
        "server",
        "reachable",
        "last_seen",
        "message",
        "version",
        "capacity",
        "capabilities",
    ]
    actions = ["check_now"]

    @admin.display(description=_("Capacity (Ready nodes)"))
    def capacity_summary(self, obj: KubernetesCluster) -> str:
        c = obj.capacity or {}
        if not c:
            return "—"
        return gettext("%(nodes)s nodes · %(cpu)s cores · %(memory)s MiB · %(pods)s pods") % {
            "nodes": c.get("nodes", 0),
            "cpu": c.get("cpu", 0),
            "memory": c.get("memory_mib", 0),
            "pods": c.get("pods", 0),
        }

    def get_deleted_objects(self, objs, request):
        """Django's list of what goes with the cluster: its tenants' namespace rows go
        with it, although staff may not delete one on its own (workloads, which run
        there, still protect it)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(TenantNamespace._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    @admin.display(description=_("Workloads"))
    def workload_count(self, obj: KubernetesCluster) -> int:
        return obj.workloads.count()

    @admin.action(description=_("Check now (read version, nodes and reachability)"))
    def check_now(self, request, queryset):
        for cluster in queryset:
            cluster = cluster_check(cluster, actor=request.user)
            if cluster.reachable:
                self.message_user(
                    request,
                    gettext("%(cluster)s: reachable, Kubernetes %(version)s, %(capacity)s.")
                    % {
                        "cluster": cluster.name,
                        "version": cluster.version,
                        "capacity": self.capacity_summary(cluster),
                    },
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"{cluster.name}: {cluster.message}", messages.ERROR)

    def save_model(self, request, obj, form, change):
        if obj.default and "default" in form.changed_data:
            # Only when ticked on this page: a page that showed this cluster as the
            # default must not take it back from a cluster made the default since.
            default_clear(keep_pk=obj.pk)
        super().save_model(request, obj, form, change)
        cluster_check(obj, actor=request.user)


@admin.register(TenantNamespace)
class TenantNamespaceAdmin(admin.ModelAdmin):
    """Each tenant's namespace on each cluster. "Provision now" is audited; a row is
    never deleted here: the namespace and its objects would stay on the cluster (and the
    row comes back with the tenant's next workload there)."""

    list_display = ["name", "tenant", "cluster", "ready", "provisioned", "message"]
    list_filter = ["cluster", "ready"]
    readonly_fields = ["tenant", "cluster", "name", "ready", "message", "provisioned"]
    actions = ["provision_now"]

    def has_add_permission(self, request):
        return False  # made when a tenant's first workload lands on a cluster

    def has_delete_permission(self, request, obj=None):
        return False  # goes with its tenant (tenant_delete) or its cluster

    @admin.action(
        description=_("Provision now (create or repair the namespace's objects)"),
        permissions=["change"],
    )
    def provision_now(self, request, queryset):
        from compute.backends.base import BackendError
        from compute.services.clusters import namespace_provision

        for row in queryset.select_related("tenant", "cluster"):
            try:
                report = namespace_provision(actor=request.user, row=row)
            except BackendError as error:
                self.message_user(request, f"{row}: {error}", messages.ERROR)
                continue
            self.message_user(
                request,
                gettext(
                    "%(row)s: %(created)d created, %(repaired)d repaired, %(unchanged)d unchanged."
                )
                % {
                    "row": row,
                    "created": len(report.created),
                    "repaired": len(report.repaired),
                    "unchanged": len(report.unchanged),
                },
                messages.SUCCESS,
            )


@admin.register(Workload)
class WorkloadAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "kind", "phase", "replicas", "ready_replicas", "cluster"]
    list_filter = ["phase", "kind", "cluster", "tenant"]
    search_fields = ["name", "tenant__slug", "image"]
    readonly_fields = [f.name for f in Workload._meta.fields]

    def has_add_permission(self, request):
        return False  # workloads are created by tenants, through the quota

    def has_delete_permission(self, request, obj=None):
        return False  # deletion goes through workload_delete (objects, quota)


@admin.register(Volume)
class VolumeAdmin(admin.ModelAdmin):
    """Volumes are the tenants': read-only here (placement included), changed through
    the portal's services only."""

    list_display = [
        "name",
        "tenant",
        "phase",
        "size_gib",
        "storage_class",
        "vm",
        "device",
        "host",
        "pool",
        "backend_name",
    ]
    list_filter = ["phase", "storage_class", "host"]
    search_fields = ["name", "tenant__slug", "backend_name"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """The tenants' objects that only the portal's services change: shown, not edited."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(VMPool)
class VMPoolAdmin(ReadOnlyAdmin):
    """VM pools: scaled and deleted through the portal (members, quota, events)."""

    list_display = ["name", "tenant", "phase", "replicas", "ready_replicas", "vcpus", "memory_mib"]
    list_filter = ["phase", "tenant"]
    search_fields = ["name", "tenant__slug"]


@admin.register(Autoscaler)
class AutoscalerAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "tenant",
        "pool",
        "workload",
        "min_replicas",
        "max_replicas",
        "target",
        "reason",
    ]
    list_filter = ["metric", "tenant"]
    search_fields = ["name", "tenant__slug", "pool__name", "workload__name"]


@admin.register(Backup)
class BackupAdmin(ServiceDeleteMixin, ReadOnlyAdmin):
    """Every tenant's backups for platform staff: read-only. Deleting one (its page or
    the "delete selected" action) goes through ``backup_delete`` — the same rules as the
    portal (Ready or Failed only, not while a restore reads it), the files removed by its
    task, and an audit entry ``backup.delete`` per backup; a refusal is a message."""

    list_display = [
        "name",
        "tenant",
        "source",
        "phase",
        "size",
        "progress_percent",
        "created",
    ]
    list_filter = ["phase", "tenant"]
    search_fields = ["name", "tenant__slug", "vm_name", "snapshot_name"]
    list_select_related = ["tenant"]

    @admin.display(description=_("source"), ordering="vm_name")
    def source(self, obj: Backup) -> str:
        from compute.services.backups import backup_source

        return f"{backup_source(obj)} @ {obj.snapshot_name}"

    @admin.display(description=_("size"), ordering="size_bytes")
    def size(self, obj: Backup) -> str:
        from django.template.defaultfilters import filesizeformat

        return filesizeformat(obj.size_bytes) if obj.size_bytes else "—"

    @admin.display(description=_("progress"), ordering="progress")
    def progress_percent(self, obj: Backup) -> str:
        return f"{obj.progress} %"

    def has_delete_permission(self, request, obj=None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_through(self, request, obj) -> str:
        from compute.services.backups import backup_delete

        backup_delete(actor=request.user, backup=obj)
        return gettext("%(backup)s: deleting; its files are removed by the worker.") % {
            "backup": obj.name
        }

    def delete_label(self, obj) -> str:
        return obj.name

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset.select_related("tenant"))


# --- Networks, security groups and Services: what the tenants made, for platform staff --
class NetworkInterfaceInline(admin.TabularInline):
    model = NetworkInterface
    fields = ["name", "vm", "mac", "fixed_ip", "addresses", "phase"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Network)
class NetworkAdmin(ReadOnlyAdmin):
    """Every tenant's networks (read-only: the portal's services make and remove them,
    and their bridges on the hosts): range, kind, bridge and the interfaces on each."""

    list_display = [
        "name",
        "tenant",
        "cidr",
        "kind",
        "bridge",
        "home_host",
        "phase",
        "interface_count",
    ]
    list_filter = ["phase", "kind", "tenant"]
    search_fields = ["name", "tenant__slug", "cidr", "bridge"]
    inlines = [NetworkInterfaceInline]

    @admin.display(description=_("interfaces"))
    def interface_count(self, obj: Network) -> int:
        return obj.nics.count()


class SecurityGroupRuleInline(admin.TabularInline):
    model = SecurityGroupRule
    fk_name = "group"
    fields = ["direction", "protocol", "port_min", "port_max", "remote_cidr", "remote_group"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SecurityGroup)
class SecurityGroupAdmin(ReadOnlyAdmin):
    """Every tenant's security groups and their rules (read-only: changed in the portal,
    which rewrites the hosts' filters and the clusters' policies)."""

    list_display = ["name", "tenant", "is_default", "rule_count", "message"]
    list_filter = ["is_default", "tenant"]
    search_fields = ["name", "tenant__slug"]
    inlines = [SecurityGroupRuleInline]

    @admin.display(description=_("rules"))
    def rule_count(self, obj: SecurityGroup) -> int:
        return obj.rules.count()


@admin.register(Service)
class ServiceAdmin(ReadOnlyAdmin):
    """Every tenant's Services: type, what the cluster allocated and how many members
    they list (read-only)."""

    list_display = ["name", "tenant", "service_type", "phase", "cluster_ip", "member_count"]
    list_filter = ["phase", "service_type", "tenant"]
    search_fields = ["name", "tenant__slug", "cluster_ip"]

    @admin.display(description=_("members"))
    def member_count(self, obj: Service) -> int:
        return len(obj.endpoints or [])
