"""Django admin for sign-in identities, in place of django-allauth's own pages.

allauth registers plain model admins: a change there is not audited, shows the single
sign-on client secret, and deletes a second factor without a trace. Here:

- **E-mail addresses**: the address and whether it is verified are edited, a secondary
  address deleted, through ``email_address_update`` / ``email_address_delete``
  (audited). New addresses come from sign-on; the account's own is on its page.
- **Social applications** (single sign-on providers): audited (``sso.app.*``, field
  names only); the client secret is write-only, typed in to set or replace it.
- **Social accounts** (SSO identities linked to users): read-only; deleting one
  unlinks it (``social_account_unlink``, audited).
- **Authenticators** (second factors): read-only, their keys never shown; "remove
  second factor" takes all of a user's away (``mfa_remove``, audited).
- **Social tokens** and e-mail confirmation keys are secrets: not in admin (the portal
  stores no provider tokens, ``SOCIALACCOUNT_STORE_TOKENS``).
"""

from __future__ import annotations

from allauth.account.models import EmailAddress, EmailConfirmation
from allauth.mfa.models import Authenticator
from allauth.socialaccount import providers
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from portal.admin import (
    AuditedModelAdmin,
    AuditedModelForm,
    ChangedSinceShownMixin,
    ServiceDeleteMixin,
)
from portal.exceptions import ApplicationError
from portal.identity import services

for model in (EmailAddress, EmailConfirmation, SocialApp, SocialAccount, SocialToken):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
if admin.site.is_registered(Authenticator):
    admin.site.unregister(Authenticator)


# --- E-mail addresses --------------------------------------------------------------------
class EmailAddressForm(ChangedSinceShownMixin, forms.ModelForm):
    class Meta:
        model = EmailAddress
        fields = list(services.EMAIL_EDITABLE)


@admin.register(EmailAddress)
class EmailAddressAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    form = EmailAddressForm
    list_display = ["email", "user", "primary", "verified"]
    list_filter = ["primary", "verified"]
    search_fields = ["email", "user__username"]
    fields = ["user", "email", "verified", "primary"]
    readonly_fields = ["user", "primary"]

    def has_add_permission(self, request):
        return False  # sign-on adds them; the account's own address is on its page

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError:
            # save_model showed the refusal; the admin's transaction rolled back.
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        edited = {f: getattr(obj, f) for f in services.EMAIL_EDITABLE if f in form.changed_data}
        try:
            saved = services.email_address_update(actor=request.user, address=obj, changes=edited)
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            raise
        obj.refresh_from_db(from_queryset=EmailAddress.objects.filter(pk=saved.pk))

    def delete_through(self, request, obj) -> None:
        services.email_address_delete(actor=request.user, address=obj)


# --- Single sign-on applications ---------------------------------------------------------
class SocialAppForm(AuditedModelForm):
    """The client secret is write-only: typed in to set or replace it, never shown."""

    instance_fields = {"client_secret": ("secret",)}

    # The providers installed (a callable: read when a form is made, not at import).
    provider = forms.ChoiceField(label=_("Provider"), choices=providers.registry.as_choices)
    # Not the model field's name: the row's value is never read into the page.
    client_secret = forms.CharField(
        label=_("Client secret"),
        required=False,
        strip=True,
        max_length=191,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Type the client secret to set or replace the stored one (never shown). "
            "Leave empty to keep the current one."
        ),
    )

    class Meta:
        model = SocialApp
        fields = ["provider", "provider_id", "name", "client_id", "key", "settings"]

    def clean(self):
        data = super().clean()
        if data.get("client_secret"):
            self.instance.secret = data["client_secret"]
        return data


@admin.register(SocialApp)
class SocialAppAdmin(AuditedModelAdmin):
    """Who may sign in through single sign-on, and how. Audited as ``sso.app.create``,
    ``.update`` (the names of the fields changed, never their values) and ``.delete``."""

    audit_noun = "sso.app"
    form = SocialAppForm
    list_display = ["name", "provider", "provider_id", "client_id", "secret_set"]
    fields = ["provider", "provider_id", "name", "client_id", "client_secret", "key", "settings"]

    @admin.display(boolean=True, description=_("Secret set"))
    def secret_set(self, obj: SocialApp) -> bool:
        return bool(obj.secret)


# --- Single sign-on identities -----------------------------------------------------------
@admin.register(SocialAccount)
class SocialAccountAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    """Identities at single sign-on providers and the users they sign in as. Read-only;
    deleting one unlinks it (audited ``sso.account.unlink``)."""

    list_display = ["user", "provider", "uid", "last_login", "date_joined"]
    list_filter = ["provider"]
    search_fields = ["uid", "user__username"]
    fields = ["user", "provider", "uid", "last_login", "date_joined", "extra_data"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_through(self, request, obj) -> str:
        services.social_account_unlink(actor=request.user, account=obj)
        return gettext("Unlinked the %(provider)s identity %(uid)s from %(username)s.") % {
            "provider": obj.provider,
            "uid": obj.uid,
            "username": obj.user.get_username(),
        }

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset.select_related("user"))


# --- Second factors ----------------------------------------------------------------------
@admin.register(Authenticator)
class AuthenticatorAdmin(admin.ModelAdmin):
    """Second factors, read-only (their keys and codes are never shown). "Remove second
    factor" takes every factor of the selected rows' users away (``mfa_remove``,
    audited ``auth.mfa.disable``): they must enrol again."""

    list_display = ["user", "type", "created_at", "last_used_at"]
    list_filter = ["type", "created_at", "last_used_at"]
    search_fields = ["user__username"]
    fields = ["user", "type", "created_at", "last_used_at"]
    readonly_fields = fields
    actions = ["remove_second_factor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # one factor alone would leave the rest half-enrolled: see below

    def has_remove_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    @admin.action(
        description=_("Remove the second factor of the selected users (they must enrol again)"),
        permissions=["remove"],
    )
    def remove_second_factor(self, request, queryset):
        users = {a.user for a in queryset.select_related("user")}
        removed = [
            user
            for user in sorted(users, key=lambda u: u.get_username())
            if services.mfa_remove(actor=request.user, user=user)
        ]
        self.message_user(
            request,
            gettext("Removed the second factor of %(count)d user(s).") % {"count": len(removed)},
            messages.SUCCESS,
        )
