"""Django admin: the platform admin's home for tenants, members, quota and audit.

Quota and membership edits go through the services so that they are validated the same
way as in the API and always audited.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.template.loader import render_to_string
from django.utils import timezone

from portal.exceptions import ApplicationError
from tenants import services
from tenants.models import QUOTA_RESOURCES, ApiToken, AuditLog, Membership, Quota, Tenant
from tenants.selectors import quota_usage

User = get_user_model()


class TenantAdminForm(forms.ModelForm):
    """The tenant's own fields plus its quota limits, saved through ``quota_set``."""

    quota_cpu = forms.DecimalField(label="CPU cores", min_value=0, decimal_places=3, max_digits=10)
    quota_memory = forms.IntegerField(label="Memory (MiB)", min_value=0)
    quota_storage = forms.IntegerField(label="Storage (GiB)", min_value=0)
    quota_vms = forms.IntegerField(label="Virtual machines", min_value=0)
    quota_pods = forms.IntegerField(label="Pods", min_value=0)

    class Meta:
        model = Tenant
        fields = ["slug", "name", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from django.conf import settings

        quota = Quota.objects.filter(tenant_id=self.instance.pk).first()
        for resource in QUOTA_RESOURCES:
            value = quota.limit(resource) if quota else settings.ISOTOPE_DEFAULT_QUOTA[resource]
            self.fields[f"quota_{resource}"].initial = value
        if self.instance.pk:
            self.fields["slug"].disabled = True
            self.fields["slug"].help_text = "The slug names the namespace; it cannot change."

    def limits(self) -> dict:
        return {r: self.cleaned_data[f"quota_{r}"] for r in QUOTA_RESOURCES}


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created"]
    readonly_fields = ["created"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    inlines = [MembershipInline]
    list_display = ["slug", "name", "member_count", "vms_usage", "cpu_usage", "created"]
    search_fields = ["slug", "name", "description"]
    list_filter = ["created"]
    readonly_fields = ["quota_usage", "uid", "created"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description"]}),
        (
            "Quota",
            {
                "description": "Limits for VMs and pods together. Lowering a limit below "
                "what is in use is allowed; new reservations are then refused.",
                "fields": [
                    "quota_usage",
                    ("quota_cpu", "quota_memory", "quota_storage"),
                    ("quota_vms", "quota_pods"),
                ],
            },
        ),
        ("Identity", {"fields": ["uid", "created"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("quota")

    @admin.display(description="Members")
    def member_count(self, obj: Tenant) -> int:
        return obj.memberships.count()

    def _bar(self, obj: Tenant, resource: str) -> str:
        usage = next(u for u in quota_usage(obj) if u.resource == resource)
        return render_to_string(
            "admin/tenants/quota_bars.html", {"usage": [usage], "compact": True}
        )

    @admin.display(description="VMs used")
    def vms_usage(self, obj: Tenant) -> str:
        return self._bar(obj, "vms")

    @admin.display(description="CPU used")
    def cpu_usage(self, obj: Tenant) -> str:
        return self._bar(obj, "cpu")

    @admin.display(description="Usage")
    def quota_usage(self, obj: Tenant) -> str:
        if not obj.pk:
            return "—"
        return render_to_string("admin/tenants/quota_bars.html", {"usage": quota_usage(obj)})

    def save_model(self, request, obj, form, change):
        try:
            if not change:
                created = services.tenant_create(
                    actor=request.user,
                    slug=obj.slug,
                    name=obj.name,
                    description=obj.description,
                    quota=form.limits(),
                )
                obj.pk = created.pk
                obj.uid = created.uid
                obj.resource_version = created.resource_version
                obj._state.adding = False
                return
            obj.save()
            result = services.quota_set(actor=request.user, tenant=obj, limits=form.limits())
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            raise
        if result.below_use:
            self.message_user(
                request,
                "The new limit is below current use for "
                + ", ".join(result.below_use)
                + ": running resources stay, new reservations will be refused.",
                messages.WARNING,
            )

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        tenant = form.instance
        # The admin's change message reads these; formset.save() is not called here.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if not inline_form.has_changed() and not formset._should_delete_form(inline_form):
                continue
            data = inline_form.cleaned_data
            if not data:
                continue
            existing = inline_form.instance.pk is not None
            try:
                if existing and formset._should_delete_form(inline_form):
                    services.membership_remove(
                        actor=request.user, tenant=tenant, user=inline_form.instance.user
                    )
                    formset.deleted_objects.append(inline_form.instance)
                elif existing:
                    membership = services.membership_set_role(
                        actor=request.user, tenant=tenant, user=data["user"], role=data["role"]
                    )
                    formset.changed_objects.append((membership, inline_form.changed_data))
                else:
                    membership = services.membership_add(
                        actor=request.user, tenant=tenant, user=data["user"], role=data["role"]
                    )
                    formset.new_objects.append(membership)
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "tenant__slug"]

    def has_add_permission(self, request):
        return False  # add members on the tenant page, where it is audited

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["time", "actor_name", "tenant_slug", "action", "target", "outcome", "source_ip"]
    list_filter = ["outcome", "action", "tenant_slug"]
    search_fields = ["actor_name", "target", "action", "tenant_slug"]
    date_hierarchy = "time"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["key_id", "user", "name", "created", "expires", "last_used", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["key_id", "user__username", "name"]
    readonly_fields = ["user", "name", "key_id", "created", "expires", "last_used", "revoked"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked__isnull=True):
            token.revoked = timezone.now()
            token.save(update_fields=["revoked"])
            services.audit_record(
                actor=request.user,
                action="token.revoke",
                target=f"token/{token.key_id}",
                detail={"owner": token.user.username, "by": "admin"},
            )


class UserMembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ["tenant", "role", "created"]
    readonly_fields = ["tenant", "role", "created"]
    can_delete = False
    verbose_name_plural = "Memberships (edit them on the tenant's page)"

    def has_add_permission(self, request, obj=None):
        return False


admin.site.unregister(User)


@admin.register(User)
class IsotopeUserAdmin(UserAdmin):
    inlines = [UserMembershipInline]
    list_display = ["username", "email", "is_staff", "is_superuser", "tenants", "last_login"]

    @admin.display(description="Tenants")
    def tenants(self, obj) -> str:
        return ", ".join(f"{m.tenant.slug} ({m.role})" for m in obj.memberships.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("memberships__tenant")


admin.site.site_header = "Isotope administration"
admin.site.site_title = "Isotope admin"
admin.site.index_title = "Platform"
