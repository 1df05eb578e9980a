"""Single sign-on through the real local Ory Hydra: users created at first sign-on,
tenant roles from group mappings re-evaluated at every sign-on, RP-initiated logout, and
every bad answer refused with a plain page, audited, nothing created."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.contrib.auth import get_user_model

from portal import signals
from tenants import services
from tenants.choices import MembershipSource, Role
from tenants.models import AuditLog, GroupMapping, Membership
from tests.conftest import _free_port
from tests.portal.identity.conftest import CALLBACK, configure, query_of
from tools.infra import oidc as provider_infra

pytestmark = [pytest.mark.oidc]
User = get_user_model()


def mapping(group: str, tenant, role: str) -> GroupMapping:
    return services.group_mapping_save(
        actor=None, mapping=GroupMapping(group=group, tenant=tenant, role=role), created=True
    )


def _session_user(browser) -> int:
    from django.contrib.sessions.backends.db import SessionStore

    return SessionStore(session_key=browser.cookies["sessionid"]).get("_auth_user_id")


# --- Sign-on, users, groups ------------------------------------------------------------
def test_first_sign_on_creates_the_user_and_lands_in_the_tenant_its_group_maps_to(demo, sso):
    mapping("acme-operators", demo.acme, Role.OPERATOR)
    mapping("globex-viewers", demo.globex, Role.VIEWER)
    name, password = sso.user(groups=["acme-operators", "unmapped"])

    browser, landed = sso.sign_in(name, password)

    assert landed.status_code == 200 and urlsplit(landed.url).path == "/"
    assert 'data-testid="tenant-card-acme"' in landed.text
    assert 'data-testid="tenant-card-globex"' not in landed.text
    user = User.objects.get(username=name)
    assert SocialAccount.objects.get(user=user).provider == "sso"
    membership = Membership.objects.get(user=user)
    assert (membership.tenant, membership.role, membership.source) == (
        demo.acme, Role.OPERATOR, MembershipSource.OIDC
    )  # fmt: skip
    assert not user.has_usable_password(), "an SSO user has no local password"
    actions = list(AuditLog.objects.filter(target__in=[f"user/{name}", name]).values_list(
        "action", "actor_name", "detail"))  # fmt: skip
    assert ("auth.sso.signup", "sso:sso") in [(a, b) for a, b, _ in actions]
    added = [d for a, _, d in actions if a == "member.add"]
    assert added == [{"role": "operator", "source": "oidc"}]
    login = AuditLog.objects.get(action="auth.sso.login", target=f"user/{name}")
    assert login.detail["groups"] == ["acme-operators", "unmapped"]
    assert login.detail["added"] == ["acme"]
    # The session is the user's: their own profile answers.
    assert browser.get(f"{sso.base}/profile/").status_code == 200
    assert _session_user(browser) == str(user.pk)


def test_groups_are_evaluated_again_at_every_sign_on_and_local_memberships_stay(demo, sso):
    mapping("acme-operators", demo.acme, Role.OPERATOR)
    mapping("acme-admins", demo.acme, Role.ADMIN)
    mapping("globex-viewers", demo.globex, Role.VIEWER)
    name, password = sso.user(groups=["acme-operators", "globex-viewers"])
    sso.sign_in(name, password)
    user = User.objects.get(username=name)
    roles = dict(Membership.objects.filter(user=user).values_list("tenant__slug", "role"))
    assert roles == {"acme": "operator", "globex": "viewer"}

    # An admin adds a local membership by hand; the provider's groups change.
    other = services.tenant_create(actor=None, slug="initech", name="Initech")
    services.membership_add(actor=demo.admin, tenant=other, user=user, role=Role.VIEWER)
    provider_infra.user_set(name, password, groups=["acme-admins", "acme-operators"])
    changed = []
    signals.membership_changed.connect(
        lambda sender, tenant, user, **kw: changed.append(tenant.slug), weak=False,
        dispatch_uid="test-sso-changed",
    )  # fmt: skip
    try:
        sso.sign_in(name, password)
    finally:
        signals.membership_changed.disconnect(dispatch_uid="test-sso-changed")

    found = {
        m.tenant.slug: (m.role, m.source)
        for m in Membership.objects.filter(user=user).select_related("tenant")
    }
    assert found == {"acme": ("admin", "oidc"), "initech": ("viewer", "local")}
    # Live sessions of the tenants that changed are told to re-check (and close).
    assert sorted(changed) == ["acme", "globex"]
    removed = AuditLog.objects.get(action="member.remove", tenant_slug="globex", target=name)
    assert removed.actor_name == "sso:sso" and removed.detail["source"] == "oidc"
    role = AuditLog.objects.get(action="member.set_role", tenant_slug="acme", target=name)
    assert role.detail == {"from": "operator", "to": "admin", "source": "oidc"}

    # Out of every group: the mapped access goes at the next sign-on, the local stays.
    provider_infra.user_set(name, password, groups=[])
    browser, landed = sso.sign_in(name, password)
    assert list(Membership.objects.filter(user=user).values_list("tenant__slug", "source")) == [
        ("initech", "local")
    ]
    assert browser.get(f"{sso.base}/t/acme/").status_code == 404


def test_an_sso_identity_never_takes_over_a_local_account_of_the_same_name(demo, sso):
    # The provider has a user called like the local superuser and the local "alice".
    mapping("acme-viewers", demo.acme, Role.VIEWER)
    provider_infra.user_set("alice", "pw-of-idp-alice", groups=["acme-viewers"],
                            email="alice@example.com")  # fmt: skip
    sso.users.append("alice")

    browser, landed = sso.sign_in("alice", "pw-of-idp-alice")

    account = SocialAccount.objects.get(provider="sso", uid="alice")
    assert account.user != demo.alice and account.user.username != "alice"
    assert account.user.username.startswith("alice")
    demo.alice.refresh_from_db()
    assert Membership.objects.get(user=demo.alice).role == Role.ADMIN  # untouched
    assert _session_user(browser) == str(account.user.pk)


def test_a_provider_configured_in_django_admin_works_the_same(demo, sso, settings):
    configure(settings, sso, None)  # nothing from the environment
    app = SocialApp.objects.create(
        provider="openid_connect",
        provider_id="sso",
        name="Admin-configured IdP",
        client_id=sso.client_id,
        secret=sso.secret,
        settings={"server_url": sso.issuer, "groups_claim": "groups"},
    )
    mapping("acme-operators", demo.acme, Role.OPERATOR)
    name, password = sso.user(groups=["acme-operators"])
    page = sso.session().get(f"{sso.base}/login/")
    assert "Sign in with Admin-configured IdP" in page.text
    _, landed = sso.sign_in(name, password)
    assert 'data-testid="tenant-card-acme"' in landed.text
    assert app.pk and User.objects.filter(username=name).exists()


def test_sign_out_ends_the_portal_session_and_the_providers(demo, sso):
    name, password = sso.user()
    browser, _ = sso.sign_in(name, password)
    csrf = browser.cookies["csrftoken"]
    out = browser.post(f"{sso.base}/logout/", data={"csrfmiddlewaretoken": csrf},
                       headers={"Referer": f"{sso.base}/"}, allow_redirects=False)  # fmt: skip
    assert out.status_code == 302
    end = out.headers["Location"]
    assert end.startswith(f"{sso.issuer}/oauth2/sessions/logout?")  # RP-initiated logout
    assert query_of(end)["post_logout_redirect_uri"] == f"{sso.base}/login/"
    final = browser.get(end)  # Hydra → our logout page → back to the portal
    assert final.status_code == 200 and final.url == f"{sso.base}/login/"
    assert browser.get(f"{sso.base}/profile/", allow_redirects=False).status_code == 302


# --- Refusals ----------------------------------------------------------------------------
def assert_refused(response, reason: str, name: str | None = None, status: int = 401) -> None:
    assert response.status_code == status, response.text[:800]
    assert 'data-testid="sso-error"' in response.text
    assert reason in response.text, response.text[:1500]
    if name:
        assert not User.objects.filter(username=name).exists(), "no account is created"
    assert not SocialAccount.objects.exists()
    assert AuditLog.objects.filter(action="auth.sso.error", outcome="failed").exists()


def test_a_sign_in_cancelled_at_the_provider_says_so_plainly(demo, sso):
    name, password = sso.user()
    browser = sso.session()
    form = sso.start(browser)
    answer = sso.submit(browser, form, name, password, action="deny")
    assert_refused(answer, "cancelled at the identity provider", name)
    assert "The user cancelled the sign-in." in answer.text
    entry = AuditLog.objects.get(action="auth.sso.error")
    assert entry.detail["error"] == "cancelled" and entry.target == "sso/sso"


def test_a_disabled_provider_account_is_refused_with_the_providers_words(demo, sso):
    name, password = sso.user(disabled=True)
    browser = sso.session()
    answer = sso.submit(browser, sso.start(browser), name, password)
    assert_refused(answer, f"The account {name} is disabled.", name)


def test_a_tampered_state_is_refused(demo, sso):
    name, password = sso.user()
    browser = sso.session()
    redirected = sso.submit(browser, sso.start(browser), name, password, allow_redirects=False)
    callback = sso.follow_until_callback(browser, redirected)
    params = query_of(callback)
    params["state"] = params["state"][:-4] + "AAAA"
    answer = browser.get(f"{sso.base}{CALLBACK}?{urlencode(params)}")
    assert_refused(answer, "its state does not match", name)


def test_a_tampered_nonce_is_refused(demo, sso):
    name, password = sso.user()
    browser = sso.session()
    to_provider = browser.post(
        f"{sso.base}/accounts/oidc/sso/login/",
        data={"csrfmiddlewaretoken": browser.get(f"{sso.base}/login/").cookies["csrftoken"]},
        allow_redirects=False,
    )
    authorize = to_provider.headers["Location"]
    params = query_of(authorize)
    assert params["code_challenge_method"] == "S256" and params["nonce"]  # PKCE + nonce
    params["nonce"] = "someone-elses-nonce-" + params["nonce"][:8]
    form = browser.get(authorize.split("?")[0] + "?" + urlencode(params))
    answer = sso.submit(browser, form, name, password)
    assert_refused(answer, "could not be verified", name)
    assert "nonce does not match" in answer.text


def test_an_unsigned_id_token_is_refused(demo, sso, token_proxy):
    token_proxy.mode = "none"
    name, password = sso.user()
    _, answer = sso.sign_in(name, password)
    assert_refused(answer, "could not be verified", name)
    assert (
        json.loads(base64.urlsafe_b64decode(token_proxy.seen[0].split(".")[0] + "=="))["alg"]
        == "RS256"
    ), "Hydra signed it; the proxy stripped the signature"


def test_an_id_token_with_a_changed_claim_is_refused(demo, sso, token_proxy):
    token_proxy.mode = "forged"
    name, password = sso.user(groups=["acme-viewers"])
    _, answer = sso.sign_in(name, password)
    assert_refused(answer, "could not be verified", name)
    assert "Signature verification failed" in answer.text


def test_an_id_token_for_another_client_is_refused(demo, sso, token_proxy, settings):
    first, password = sso.user()
    sso.sign_in(first, password)  # a genuine token, audience = this test's first client
    genuine = token_proxy.seen[-1]
    other = provider_infra.client_create(
        sso.client_id + "-b", redirect_uris=[f"{sso.base}{CALLBACK}"]
    )
    sso.client_id, sso.secret = other["client_id"], other["client_secret"]
    configure(settings, sso, sso.settings_app(
        openid_configuration_overrides={"token_endpoint": token_proxy.url}))  # fmt: skip
    token_proxy.mode, token_proxy.replacement = "swap", genuine
    SocialAccount.objects.all().delete()
    name, password = sso.user()
    _, answer = sso.sign_in(name, password)
    assert_refused(answer, "could not be verified", name)
    assert "Audience doesn" in answer.text


def test_an_expired_id_token_is_refused(demo, sso, token_proxy, settings):
    short = provider_infra.client_create(
        sso.client_id + "-short",
        redirect_uris=[f"{sso.base}{CALLBACK}"],
        extra={"authorization_code_grant_id_token_lifespan": "1s"},
    )
    sso.client_id, sso.secret = short["client_id"], short["client_secret"]
    configure(settings, sso, sso.settings_app(
        openid_configuration_overrides={"token_endpoint": token_proxy.url}))  # fmt: skip
    token_proxy.mode, token_proxy.delay = "delay", 2.5
    name, password = sso.user()
    _, answer = sso.sign_in(name, password)
    assert_refused(answer, "could not be verified", name)
    assert "Signature has expired" in answer.text


def test_a_provider_that_is_down_gives_a_clear_page_and_creates_nothing(demo, sso, settings):
    configure(settings, sso, sso.settings_app(server_url=f"https://127.0.0.1:{_free_port()}"))
    browser = sso.session()
    answer = sso.start(browser)
    assert_refused(answer, "The identity provider cannot be reached", status=502)
    assert (
        AuditLog.objects.get(action="auth.sso.error")
        .detail["reason"]
        .startswith("The identity provider cannot be reached")
    )
