"""Django admin for hosts, images, flavors and (read-mostly) virtual machines."""

from __future__ import annotations

from django.contrib import admin, messages

from compute.models import Flavor, Host, Image, Migration, MigrationPolicy, VirtualMachine
from compute.services.hosts import host_check


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "uri",
        "reachable",
        "enabled",
        "maintenance",
        "cpus",
        "memory_mib",
        "effective_virt_type",
        "vm_count",
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
    ]
    actions = ["check_now"]

    @admin.display(description="VMs")
    def vm_count(self, obj: Host) -> int:
        return obj.vms.count()

    @admin.action(description="Check now (read capacity and reachability)")
    def check_now(self, request, queryset):
        for host in queryset:
            host = host_check(host, actor=request.user)
            if host.reachable:
                self.message_user(
                    request,
                    f"{host.name}: reachable, {host.cpus} CPUs, {host.memory_mib} MiB, "
                    f"guests run as {host.effective_virt_type}.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"{host.name}: {host.message}", messages.ERROR)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        host_check(obj, actor=request.user)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display_name",
        "kind",
        "public",
        "tenant",
        "min_memory_mib",
        "os_label",
    ]
    list_filter = ["kind", "public"]
    search_fields = ["name", "display_name", "os_label"]


@admin.register(Flavor)
class FlavorAdmin(admin.ModelAdmin):
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
class MigrationPolicyAdmin(admin.ModelAdmin):
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
    """Read-only history of live migrations."""

    list_display = ["vm_name", "tenant", "source", "target", "phase", "created", "reason"]
    list_filter = ["phase", "source", "target"]
    search_fields = ["vm_name", "tenant__slug"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
