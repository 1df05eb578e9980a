"""Django admin: the platform admin's home for tenants, members, quota and audit.

Quota, membership and account edits (deactivate, delete) go through the services so
that they are validated the same way as in the API, keep each tenant's last admin,
close the affected websockets and console sessions, and are always audited. Sign-in
lockouts (django-axes) are listed and lifted here too.
"""

from __future__ import annotations

from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from portal.admin import (
    AuditedModelAdmin,
    AuditedModelForm,
    ChangedSinceShownMixin,
    ServiceDeleteMixin,
)
from portal.exceptions import ApplicationError
from tenants import services
from tenants.models import (
    QUOTA_RESOURCES,
    ApiToken,
    AuditLog,
    GroupMapping,
    Membership,
    Quota,
    Tenant,
)
from tenants.selectors import quota_usage

User = get_user_model()


class TenantAdminForm(ChangedSinceShownMixin, forms.ModelForm):
    """The tenant's own fields plus its quota limits, saved through ``quota_set``.
    ``changed_data`` names what was edited on the page (not what differs from the rows
    now: the quota may have been changed through the API since)."""

    quota_cpu = forms.DecimalField(
        label=_("CPU cores"), min_value=0, decimal_places=3, max_digits=10
    )
    quota_memory = forms.IntegerField(label=_("Memory (MiB)"), min_value=0)
    quota_storage = forms.IntegerField(label=_("Storage (GiB)"), min_value=0)
    quota_vms = forms.IntegerField(label=_("Virtual machines"), min_value=0)
    quota_pods = forms.IntegerField(label=_("Pods"), min_value=0)
    quota_networks = forms.IntegerField(
        label=_("Networks"), min_value=0, required=False, help_text=_("Empty: left as it is.")
    )

    class Meta:
        model = Tenant
        fields = ["slug", "name", "description", "require_2fa"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from django.conf import settings

        quota = Quota.objects.filter(tenant_id=self.instance.pk).first()
        for resource in QUOTA_RESOURCES:
            value = quota.limit(resource) if quota else settings.ISOTOPE_DEFAULT_QUOTA[resource]
            self.fields[f"quota_{resource}"].initial = value
        if self.instance.pk:
            self.fields["slug"].disabled = True
            self.fields["slug"].help_text = _("The slug names the namespace; it cannot change.")

    def limits(self, edited_only: bool = False) -> dict:
        """The limits entered (empty ones left out); ``edited_only``: those edited on
        the page."""
        values = {r: self.cleaned_data.get(f"quota_{r}") for r in QUOTA_RESOURCES}
        return {
            r: v
            for r, v in values.items()
            if v is not None and (not edited_only or f"quota_{r}" in self.changed_data)
        }


class MembershipInlineForm(ChangedSinceShownMixin, forms.ModelForm):
    """A member's row on the tenant page: a role changed elsewhere since the page was
    opened is not written back unless edited here."""


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipInlineForm
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "role", "source", "created"]
    readonly_fields = ["source", "created"]


@admin.register(Tenant)
class TenantAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    """Tenants with their quota and members. Deleting one (its page or "delete
    selected") goes through ``tenant_delete``: audited, and refused with a message while
    the tenant still owns VMs, volumes, workloads or anything else that runs."""

    form = TenantAdminForm
    inlines = [MembershipInline]
    list_display = ["slug", "name", "member_count", "vms_usage", "cpu_usage", "created"]
    search_fields = ["slug", "name", "description"]
    list_filter = ["created"]
    readonly_fields = ["quota_usage", "uid", "created"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "require_2fa"]}),
        (
            _("Quota"),
            {
                "description": _(
                    "Limits for VMs and pods together. Lowering a limit below "
                    "what is in use is allowed; new reservations are then refused."
                ),
                "fields": [
                    "quota_usage",
                    ("quota_cpu", "quota_memory", "quota_storage"),
                    ("quota_vms", "quota_pods", "quota_networks"),
                ],
            },
        ),
        (_("Identity"), {"fields": ["uid", "created"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("quota")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError:
            # save_model showed the service's refusal (e.g. the slug was taken by a
            # create that committed after this form was validated). The admin's
            # transaction has rolled back: nothing was saved. Show the form again.
            return HttpResponseRedirect(request.get_full_path())

    @admin.display(description=_("Members"))
    def member_count(self, obj: Tenant) -> int:
        return obj.memberships.count()

    def _bar(self, obj: Tenant, resource: str) -> str:
        usage = next(u for u in quota_usage(obj) if u.resource == resource)
        return render_to_string(
            "admin/tenants/quota_bars.html", {"usage": [usage], "compact": True}
        )

    @admin.display(description=_("VMs used"))
    def vms_usage(self, obj: Tenant) -> str:
        return self._bar(obj, "vms")

    @admin.display(description=_("CPU used"))
    def cpu_usage(self, obj: Tenant) -> str:
        return self._bar(obj, "cpu")

    @admin.display(description=_("Usage"))
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
                if obj.require_2fa:
                    services.tenant_set_require_2fa(actor=request.user, tenant=obj, required=True)
                return
            # Only what was edited on the page, each under its row's lock: the quota may
            # have been raised through the API, 2FA required by another admin, since.
            edited = {f: getattr(obj, f) for f in services.TENANT_EDITABLE}
            edited = {f: v for f, v in edited.items() if f in form.changed_data}
            if edited:
                services.tenant_update(actor=request.user, tenant=obj, changes=edited)
            if "require_2fa" in form.changed_data:
                services.tenant_set_require_2fa(
                    actor=request.user, tenant=obj, required=obj.require_2fa
                )
            limits = form.limits(edited_only=True)
            result = (
                services.quota_set(actor=request.user, tenant=obj, limits=limits)
                if limits
                else None
            )
            obj.refresh_from_db()  # the row as it is now, not as the page showed it
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            raise
        if result and result.below_use:
            self.message_user(
                request,
                gettext(
                    "The new limit is below current use for %(resources)s: running "
                    "resources stay, new reservations will be refused."
                )
                % {"resources": ", ".join(result.below_use)},
                messages.WARNING,
            )

    def delete_through(self, request, obj) -> None:
        services.tenant_delete(actor=request.user, tenant=obj)

    def delete_label(self, obj) -> str:
        return obj.slug

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
class MembershipAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    """Memberships across tenants. Removing one goes through ``membership_remove``
    (last-admin rule, audit, the user's sockets for that tenant re-checked)."""

    list_display = ["user", "tenant", "role", "source", "created"]
    list_filter = ["role", "source", "tenant"]
    search_fields = ["user__username", "tenant__slug"]
    actions = ["remove_selected"]

    def has_add_permission(self, request):
        return False  # add members on the tenant page, where it is audited

    def has_change_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # Django's bulk delete bypasses the service
        return actions

    def delete_through(self, request, obj) -> None:
        services.membership_remove(actor=request.user, tenant=obj.tenant, user=obj.user)

    def delete_label(self, obj) -> str:
        return gettext("%(user)s in %(tenant)s") % {"user": obj.user, "tenant": obj.tenant}

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset.select_related("user", "tenant"))

    @admin.action(description=_("Remove selected memberships"), permissions=["delete"])
    def remove_selected(self, request, queryset):
        removed = sum(
            self.delete_model(request, membership)
            for membership in queryset.select_related("user", "tenant")
        )
        if removed:
            self.message_user(
                request,
                gettext("Removed %(count)d membership(s).") % {"count": removed},
                messages.SUCCESS,
            )


@admin.register(GroupMapping)
class GroupMappingAdmin(admin.ModelAdmin):
    """Single sign-on groups → tenant roles, applied at each user's next sign-on.
    Every change is audited (``sso.mapping.*``)."""

    list_display = ["group", "tenant", "role", "created"]
    list_filter = ["role", "tenant"]
    search_fields = ["group", "tenant__slug"]
    autocomplete_fields = ["tenant"]

    def save_model(self, request, obj, form, change):
        services.group_mapping_save(actor=request.user, mapping=obj, created=not change)

    def delete_model(self, request, obj):
        services.group_mapping_delete(actor=request.user, mapping=obj)

    def delete_queryset(self, request, queryset):
        for mapping in queryset.select_related("tenant"):
            services.group_mapping_delete(actor=request.user, mapping=mapping)


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
    """Every user's API tokens. Staff revoke a token (audited) and never delete one: the
    revoked row keeps whose key it was and when it was last used, which the audit
    entries naming ``token/<key id>`` need, and a revoked token is refused already."""

    list_display = ["key_id", "user", "name", "created", "expires", "last_used", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["key_id", "user__username", "name"]
    readonly_fields = ["user", "name", "key_id", "created", "expires", "last_used", "revoked"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead (above)

    @admin.action(description=_("Revoke selected tokens"), permissions=["change"])
    def revoke(self, request, queryset):
        revoked = sum(
            services.token_revoke_as_staff(actor=request.user, token=token)
            for token in queryset.filter(revoked__isnull=True).select_related("user")
        )
        self.message_user(
            request,
            gettext("Revoked %(count)d token(s).") % {"count": revoked},
            messages.SUCCESS,
        )


class UserMembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ["tenant", "role", "created"]
    readonly_fields = ["tenant", "role", "created"]
    can_delete = False
    verbose_name_plural = _("Memberships (edit them on the tenant's page)")

    def has_add_permission(self, request, obj=None):
        return False


class UserChangeAdminForm(ChangedSinceShownMixin, UserChangeForm):
    """An account's page: ``changed_data`` names what was edited on it, so a privilege
    granted or an address changed by another admin since is not written back."""


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class IsotopeUserAdmin(ServiceDeleteMixin, UserAdmin):
    """Accounts. Every write goes through a service and is audited: creating one
    (``user_create``), editing it (``user_update``: privileges with their values),
    its groups and permissions (``user_set_groups`` / ``user_set_permissions``), its
    password (``user_set_password``), deactivating or deleting it (``user_set_active`` /
    ``user_delete``: last-admin rule, every open socket of the user closed)."""

    form = UserChangeAdminForm
    inlines = [UserMembershipInline]
    list_display = [
        "username",
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "tenants",
        "last_login",
    ]
    actions = ["deactivate", "unlock_sign_in"]

    @admin.display(description=_("Tenants"))
    def tenants(self, obj) -> str:
        return ", ".join(f"{m.tenant.slug} ({m.role})" for m in obj.memberships.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("memberships__tenant")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # Django's bulk delete bypasses the service
        return actions

    def save_model(self, request, obj, form, change):
        if not change:
            services.user_create(actor=request.user, user=obj)
            return
        # Only what was edited on the page, under the row's lock.
        edited = {f: getattr(obj, f) for f in services.USER_EDITABLE if f in form.changed_data}
        if edited:
            services.user_update(actor=request.user, user=obj, changes=edited)
        if "is_active" in form.changed_data:
            try:
                services.user_set_active(actor=request.user, user=obj, active=obj.is_active)
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
        obj.refresh_from_db()  # the row as it is now, not as the page showed it

    def save_related(self, request, form, formsets, change):
        # Not form.save_m2m(): groups and permissions grant admin rights, so they go
        # through the services (audited); the membership inline is read-only.
        user = form.instance
        if "groups" in form.changed_data:
            services.user_set_groups(
                actor=request.user, user=user, groups=form.cleaned_data["groups"]
            )
        if "user_permissions" in form.changed_data:
            services.user_set_permissions(
                actor=request.user, user=user, permissions=form.cleaned_data["user_permissions"]
            )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def user_change_password(self, request, id, form_url=""):
        """Django's password page, the new password (or none) set by
        ``user_set_password``; a GET or a form with errors is Django's own."""
        user = self.get_object(request, unquote(id)) if request.method == "POST" else None
        if user is None or not self.has_change_permission(request, user):
            return super().user_change_password(request, id, form_url)
        form = self.change_password_form(user, request.POST)
        if not form.is_valid():
            return super().user_change_password(request, id, form_url)
        usable = form.cleaned_data["set_usable_password"]
        if not usable and "unset-password" not in request.POST:
            return super().user_change_password(request, id, form_url)  # Django refuses
        own = user.pk == request.user.pk
        services.user_set_password(
            actor=request.user,
            user=user,
            password=form.cleaned_data["password1"] if usable else None,
            # Their other sessions end; this one stays (update_session_auth_hash below).
            keep_session_key=(request.session.session_key or "") if own else "",
        )
        self.log_change(request, user, self.construct_change_message(request, form, None))
        self.message_user(
            request,
            gettext("Password changed successfully.")
            if usable
            else gettext("Password-based authentication was disabled."),
            messages.SUCCESS,
        )
        update_session_auth_hash(request, user)  # staff changing their own stay signed in
        return HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))

    def delete_through(self, request, obj) -> None:
        services.user_delete(actor=request.user, user=obj)

    @admin.action(description=_("Deactivate selected users (closes their sessions)"))
    def deactivate(self, request, queryset):
        done = 0
        for user in queryset.filter(is_active=True):
            try:
                services.user_set_active(actor=request.user, user=user, active=False)
                done += 1
            except ApplicationError as error:
                self.message_user(request, f"{user}: {error.message}", messages.ERROR)
        if done:
            self.message_user(
                request,
                gettext("Deactivated %(count)d user(s).") % {"count": done},
                messages.SUCCESS,
            )

    @admin.action(description=_("Unlock sign-in of selected users"))
    def unlock_sign_in(self, request, queryset):
        for user in queryset:
            services.login_lockout_reset(actor=request.user, username=user.get_username())
        self.message_user(request, gettext("Sign-in unlocked."), messages.SUCCESS)


class GroupAdminForm(AuditedModelForm):
    class Meta:
        model = Group
        fields = ["name", "permissions"]


@admin.register(Group)
class IsotopeGroupAdmin(AuditedModelAdmin, GroupAdmin):
    """Django permission groups: what they grant in admin is a privilege, so creating,
    changing (permissions by name) and deleting one is audited (``group.*``); who is in
    a group is edited on the account's page (``user.set_groups``)."""

    audit_noun = "group"
    form = GroupAdminForm


@admin.register(AccessAttempt)
class SignInFailureAdmin(admin.ModelAdmin):
    """Failed sign-ins counted by django-axes (per username and per address). Lifting a
    lockout goes through ``login_lockout_reset`` (audited)."""

    list_display = [
        "username",
        "ip_address",
        "failures_since_start",
        "locked_out",
        "attempt_time",
        "path_info",
    ]
    search_fields = ["username", "ip_address"]
    list_filter = ["attempt_time"]
    ordering = ["-attempt_time"]
    fields = ["username", "ip_address", "user_agent", "path_info", "failures_since_start"]
    readonly_fields = fields
    actions = ["unlock"]

    @admin.display(boolean=True, description=_("Locked out"))
    def locked_out(self, obj: AccessAttempt) -> bool:
        return obj.failures_since_start >= settings.AXES_FAILURE_LIMIT

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # "unlock" below: audited, and it clears the username's other rows

    @admin.action(description=_("Unlock the usernames and addresses of the selected rows"))
    def unlock(self, request, queryset):
        pairs = {(a.username or "", a.ip_address or "") for a in queryset}
        for username, ip in sorted(pairs):
            services.login_lockout_reset(actor=request.user, username=username, ip=ip)
        self.message_user(
            request,
            gettext("Unlocked %(count)d sign-in record(s).") % {"count": len(pairs)},
            messages.SUCCESS,
        )


admin.site.site_header = _("Isotope administration")
admin.site.site_title = _("Isotope admin")
admin.site.index_title = _("Platform")
