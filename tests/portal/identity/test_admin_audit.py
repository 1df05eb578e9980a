"""django-allauth's rows in Django admin (e-mail addresses, single sign-on apps and
identities, second factors): every write staff make shows in the audit log, secrets are
never shown or logged, and what is refused changes nothing."""

from __future__ import annotations

import json

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.contrib.auth import get_user_model
from django.test import Client

from tenants.models import AuditLog
from tests.conftest import messages_of
from tests.portal.identity.test_two_factor import sign_in, signed_in
from tests.tenants.test_admin import form_data

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
User = get_user_model()
SECRET = "s3cret-Client-Value-9f2c"


def audit_text() -> str:
    return json.dumps(list(AuditLog.objects.values("action", "target", "detail")))


# --- Second factors ----------------------------------------------------------------------
def enrolled(user) -> Authenticator:
    """TOTP and recovery codes, as allauth enrols them; returns the TOTP row."""
    totp = TOTP.activate(user, "JBSWY3DPEHPK3PXP").instance
    RecoveryCodes.activate(user)
    return totp


def test_removing_a_users_second_factor_in_admin_is_audited_and_they_sign_in_with_the_password(
    demo,
):
    bob_totp = enrolled(demo.bob)
    carol_totp = enrolled(demo.carol)
    staff = Client()
    staff.force_login(demo.admin)
    response = staff.post(
        "/admin/mfa/authenticator/",
        {"action": "remove_second_factor", "_selected_action": [str(bob_totp.pk)]},
    )
    assert response.status_code == 302
    assert "Removed the second factor of 1 user(s)." in messages_of(response)

    assert not Authenticator.objects.filter(user=demo.bob).exists()  # codes too
    assert Authenticator.objects.filter(pk=carol_totp.pk).exists()
    entry = AuditLog.objects.get(action="auth.mfa.disable")
    assert (entry.actor, entry.target) == (demo.admin, "user/bob")
    assert entry.detail == {"types": ["recovery_codes", "totp"], "by": "admin"}
    client = Client()
    assert sign_in(client, "bob")["Location"] == "/"  # no code asked
    assert signed_in(client)


def test_second_factors_are_read_only_in_admin_and_never_show_their_key(demo, staff):
    totp = enrolled(demo.bob)
    key = totp.data["secret"]
    page = staff.get(f"/admin/mfa/authenticator/{totp.pk}/change/")
    assert page.status_code == 200
    assert key not in page.content.decode()
    assert 'value="delete_selected"' not in staff.get("/admin/mfa/authenticator/").content.decode()

    assert (
        staff.post(f"/admin/mfa/authenticator/{totp.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    edit = staff.post(f"/admin/mfa/authenticator/{totp.pk}/change/", {"type": "recovery_codes"})
    assert edit.status_code == 403
    assert Authenticator.objects.get(pk=totp.pk).data == totp.data
    assert not AuditLog.objects.filter(action__startswith="auth.mfa").exists()


# --- Single sign-on applications ---------------------------------------------------------
def app_form(**values) -> dict:
    data = {
        "provider": "openid_connect",
        "provider_id": "corp",
        "name": "Corp SSO",
        "client_id": "isotope",
        "client_secret": "",
        "key": "",
        "settings": json.dumps({"server_url": "https://sso.example.com"}),
    }
    data.update(values)
    return data


def test_a_single_sign_on_app_is_audited_by_field_names_and_its_secret_never_shown(demo, staff):
    created = staff.post("/admin/socialaccount/socialapp/add/", app_form(client_secret=SECRET))
    assert created.status_code == 302, created.content.decode()[:3000]
    app = SocialApp.objects.get(provider_id="corp")
    assert app.secret == SECRET
    entry = AuditLog.objects.get(action="sso.app.create")
    assert (entry.actor, entry.target) == (demo.admin, "sso.app/Corp SSO")

    url = f"/admin/socialaccount/socialapp/{app.pk}/change/"
    page = staff.get(url).content.decode()
    assert SECRET not in page
    data = form_data(page, "socialapp_form")
    data["client_id"] = "isotope-2"  # the secret left empty: kept
    assert staff.post(url, data).status_code == 302
    app.refresh_from_db()
    assert (app.client_id, app.secret) == ("isotope-2", SECRET)
    data = form_data(staff.get(url).content.decode(), "socialapp_form")
    data["client_secret"] = "an0ther-Secret"
    assert staff.post(url, data).status_code == 302
    assert SocialApp.objects.get(pk=app.pk).secret == "an0ther-Secret"
    updates = AuditLog.objects.filter(action="sso.app.update").order_by("pk")
    assert [e.detail for e in updates] == [{"fields": ["client_id"]}, {"fields": ["client_secret"]}]

    assert staff.post(f"/admin/socialaccount/socialapp/{app.pk}/delete/", {"post": "yes"})
    assert not SocialApp.objects.filter(pk=app.pk).exists()
    assert AuditLog.objects.get(action="sso.app.delete").target == "sso.app/Corp SSO"
    assert SECRET not in audit_text() and "an0ther-Secret" not in audit_text()


# --- Single sign-on identities -----------------------------------------------------------
def test_unlinking_a_single_sign_on_identity_in_admin_is_audited(demo, staff):
    link = SocialAccount.objects.create(user=demo.carol, provider="corp", uid="sub-123")
    edit = staff.post(
        f"/admin/socialaccount/socialaccount/{link.pk}/change/",
        {"user": str(demo.bob.pk), "provider": "corp", "uid": "sub-123", "extra_data": "{}"},
    )
    assert edit.status_code == 403  # no one re-points an identity to another user
    assert SocialAccount.objects.get(pk=link.pk).user == demo.carol
    assert not AuditLog.objects.filter(action__startswith="sso.").exists()

    response = staff.post(f"/admin/socialaccount/socialaccount/{link.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not SocialAccount.objects.filter(pk=link.pk).exists()
    entry = AuditLog.objects.get(action="sso.account.unlink")
    assert (entry.actor, entry.target) == (demo.admin, "user/carol")
    assert entry.detail == {"provider": "corp", "subject": "sub-123"}


# --- E-mail addresses --------------------------------------------------------------------
def test_changing_an_email_address_in_admin_is_audited_and_moves_the_accounts_address(demo, staff):
    User.objects.filter(pk=demo.carol.pk).update(email="carol@acme.example")
    primary = EmailAddress.objects.create(
        user=demo.carol, email="carol@acme.example", primary=True, verified=True
    )
    url = f"/admin/account/emailaddress/{primary.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "emailaddress_form")
    data["email"] = "carol@elsewhere.example"
    response = staff.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert EmailAddress.objects.get(pk=primary.pk).email == "carol@elsewhere.example"
    assert User.objects.get(pk=demo.carol.pk).email == "carol@elsewhere.example"
    entry = AuditLog.objects.get(action="email.update")
    assert (entry.actor, entry.target) == (demo.admin, "user/carol")
    assert entry.detail == {
        "fields": ["email"],
        "email_was": "carol@acme.example",
        "account_email": True,
    }


def test_an_address_the_user_has_already_is_refused_and_changes_nothing(demo, staff):
    EmailAddress.objects.create(user=demo.carol, email="carol@a.example", primary=True)
    other = EmailAddress.objects.create(user=demo.carol, email="carol@b.example")
    url = f"/admin/account/emailaddress/{other.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "emailaddress_form")
    data["email"] = "carol@a.example"
    response = staff.post(url, data)
    assert response.status_code == 302
    assert any("has the address carol@a.example already" in m for m in messages_of(response))
    assert EmailAddress.objects.get(pk=other.pk).email == "carol@b.example"
    assert not AuditLog.objects.filter(action__startswith="email.").exists()


def test_deleting_the_primary_address_is_refused_and_a_secondary_one_is_audited(demo, staff):
    primary = EmailAddress.objects.create(user=demo.carol, email="carol@a.example", primary=True)
    other = EmailAddress.objects.create(user=demo.carol, email="carol@b.example")
    refused = staff.post(f"/admin/account/emailaddress/{primary.pk}/delete/", {"post": "yes"})
    assert refused.status_code == 302
    assert any("is the primary address of carol" in m for m in messages_of(refused))
    assert EmailAddress.objects.filter(pk=primary.pk).exists()
    assert not AuditLog.objects.filter(action__startswith="email.").exists()

    done = staff.post(f"/admin/account/emailaddress/{other.pk}/delete/", {"post": "yes"})
    assert done.status_code == 302
    assert not EmailAddress.objects.filter(pk=other.pk).exists()
    entry = AuditLog.objects.get(action="email.delete")
    assert (entry.target, entry.detail) == ("user/carol", {"email": "carol@b.example"})


def test_allauths_token_and_confirmation_pages_are_gone(staff):
    assert staff.get("/admin/socialaccount/socialtoken/").status_code == 404
    assert staff.get("/admin/account/emailconfirmation/").status_code == 404
