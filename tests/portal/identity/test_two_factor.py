"""Two-factor authentication for local accounts (django-allauth's TOTP and recovery
codes): enrolment, the code step of /login/, wrong codes refused and throttled, and
the staff and per-tenant requirements; API tokens are never asked for a second factor."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client

from tenants import services
from tenants.models import AuditLog
from tests.conftest import PASSWORD

# Transactional: allauth announces a new authenticator on commit (audit, session record).
pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


def totp(secret: str, at: float | None = None, step: int = 0) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s), written here to check allauth independently."""
    counter = int((time.time() if at is None else at) // 30) + step
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def enrol(client: Client, password: str = PASSWORD) -> str:
    """Activate TOTP on the signed-in client's account (confirming the password first,
    as allauth asks before any change of second factors); returns the secret."""
    page = client.get("/accounts/2fa/totp/activate/")
    if page.status_code == 302 and page["Location"].startswith("/accounts/reauthenticate/"):
        confirmed = client.post(page["Location"], {"password": password})
        assert confirmed.status_code == 302, confirmed.content.decode()[:1000]
        page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', page.content.decode())
    if secret is None:
        secret = re.search(r'value="([A-Z2-7]{16,})"', page.content.decode())
    assert secret, page.content.decode()[:2000]
    answer = client.post("/accounts/2fa/totp/activate/", {"code": totp(secret.group(1))})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    return secret.group(1)


def sign_in(client: Client, username: str, password: str = PASSWORD):
    return client.post("/login/", {"username": username, "password": password})


def password_session(username: str) -> Client:
    """A browser signed in with the password form (enrolment wants a recent sign-in)."""
    client = Client()
    assert sign_in(client, username).status_code == 302
    return client


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def tolerant(settings):
    """Accept the next 30 s window's code too: allauth refuses a code used once (the
    enrolment's), and the test should not wait for the clock."""
    settings.MFA_TOTP_TOLERANCE = 1


def test_after_enrolling_totp_sign_in_asks_for_a_code_and_only_the_right_one_works(demo, tolerant):
    own = password_session("bob")
    secret = enrol(own)
    assert Authenticator.objects.filter(user=demo.bob, type="totp").exists()
    assert AuditLog.objects.filter(action="auth.mfa.enable", actor_name="bob").exists()

    client = Client()
    step = sign_in(client, "bob")
    assert step.status_code == 302 and step["Location"] == "/accounts/2fa/authenticate/"
    assert not signed_in(client), "the password alone does not sign in"
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200 and "Incorrect code" in wrong.content.decode()
    assert not signed_in(client)
    right = client.post("/accounts/2fa/authenticate/", {"code": totp(secret, step=1)})
    assert right.status_code == 302 and right["Location"] == "/"
    assert signed_in(client)
    failed = AuditLog.objects.get(action="auth.mfa.failed")
    assert (failed.actor_name, failed.outcome) == ("bob", "denied")


def test_wrong_codes_are_throttled_then_even_the_right_code_is_refused(demo, tolerant, settings):
    own = password_session("carol")
    secret = enrol(own)
    client = Client()
    sign_in(client, "carol")
    limit = settings.ISOTOPE_MFA_FAILURE_LIMIT
    for n in range(limit):
        answer = client.post("/accounts/2fa/authenticate/", {"code": f"{n:06d}"})
        assert "Incorrect code" in answer.content.decode()
    refused = client.post("/accounts/2fa/authenticate/", {"code": totp(secret, step=1)})
    assert "Too many failed login attempts" in refused.content.decode()
    assert not signed_in(client)
    assert AuditLog.objects.filter(action="auth.mfa.failed", actor_name="carol").count() == limit


def test_a_recovery_code_signs_in_once(demo, tolerant):
    own = password_session("bob")
    enrol(own)
    page = own.get("/accounts/2fa/recovery-codes/").content.decode()
    codes = re.findall(r"\b([0-9a-f]{8})\b", page) or re.findall(r"\b(\d{8})\b", page)
    assert codes, page[:2000]
    client = Client()
    sign_in(client, "bob")
    assert client.post("/accounts/2fa/authenticate/", {"code": codes[0]}).status_code == 302
    assert signed_in(client)
    again = Client()
    sign_in(again, "bob")
    reused = again.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert "Incorrect code" in reused.content.decode() and not signed_in(again)


def test_a_tenant_requiring_2fa_sends_members_to_enrol_but_tokens_still_work(demo, tolerant):
    services.tenant_set_require_2fa(actor=demo.admin, tenant=demo.acme, required=True)
    assert AuditLog.objects.filter(action="tenant.require_2fa", tenant_slug="acme").exists()
    browser = password_session("bob")  # a password-only session

    page = browser.get("/t/acme/")
    assert page.status_code == 302 and page["Location"] == "/accounts/2fa/totp/activate/"
    api = browser.get("/api/v1/tenants/acme/virtualmachines/")
    assert api.status_code == 403 and api["Content-Type"] == "application/problem+json"
    assert "requires two-factor authentication" in api.json()["detail"]
    # Other tenants and the dashboard are not affected.
    assert browser.get("/").status_code == 200
    dave = Client()
    dave.force_login(demo.dave)
    assert dave.get("/t/globex/").status_code == 200
    # Automation keeps working with an API token.
    _, key = services.token_create(user=demo.bob, name="ci")
    automation = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert automation.get("/api/v1/tenants/acme/virtualmachines/").status_code == 200

    enrol(browser)  # typing a code while enrolling proves the factor for this session
    assert browser.get("/t/acme/").status_code == 200
    # The profile lists the token with its last use (the request above), not "—".
    row = re.search(
        r"<tr[^>]*>\s*<td>ci</td>.*?</tr>", browser.get("/profile/").content.decode(), re.S
    )
    assert row and "iso_" in row.group(0)
    assert re.search(r">(now|[^<]* ago)</td>", row.group(0)), row.group(0)
    # A later password-only session of an enrolled member is sent to type a code.
    later = Client()
    later.force_login(demo.bob)
    again = later.get("/t/acme/")
    assert again.status_code == 302
    assert again["Location"].startswith("/accounts/2fa/reauthenticate/")


def test_a_token_header_exempts_only_api_requests_signed_in_by_the_token(demo):
    """Any ``Authorization: Token`` header, valid or not, let a password-only session
    use the pages of a tenant that requires a second factor: pages never read it."""
    services.tenant_set_require_2fa(actor=demo.admin, tenant=demo.acme, required=True)
    browser = password_session("bob")
    for header in ("Token whatever", "token iso_1_x", "Token"):
        for path in ("/t/acme/", "/t/acme/vms/", "/t/acme/members/"):
            page = browser.get(path, HTTP_AUTHORIZATION=header)
            assert page.status_code == 302, (header, path)
            assert page["Location"] == "/accounts/2fa/totp/activate/", (header, path)
        sent = browser.post("/t/acme/vms/new/", {"name": "x"}, HTTP_AUTHORIZATION=header)
        assert sent.status_code == 302 and sent["Location"] == "/accounts/2fa/totp/activate/"
        # The API with the session and a token that is not one: the token is asked for.
        api = browser.get("/api/v1/tenants/acme/virtualmachines/", HTTP_AUTHORIZATION=header)
        assert api.status_code == 401, header


def shown(answer) -> str:
    """What an answer says, without its per-response CSRF tokens."""
    return re.sub(r'name="csrfmiddlewaretoken" value="\w+"', "", answer.content.decode())


def test_a_tenant_requiring_2fa_is_a_404_to_whoever_is_not_its_member(demo):
    """carol (acme only) was told that globex exists and requires a second factor:
    403 "The tenant globex requires two-factor authentication" from the API and a
    redirect to enrol from its pages, against 404 for a tenant that does not exist."""
    services.tenant_set_require_2fa(actor=demo.admin, tenant=demo.globex, required=True)
    carol = password_session("carol")
    carol.get("/")  # shows the sign-in's message, once
    for path in ("/api/v1/tenants/{}/virtualmachines/", "/t/{}/vms/", "/t/{}/"):
        real, missing = carol.get(path.format("globex")), carol.get(path.format("nosuch"))
        assert real.status_code == missing.status_code == 404, path
        assert shown(real).replace("globex", "nosuch") == shown(missing), path
    # Its members are still asked.
    dave = password_session("dave")
    assert dave.get("/t/globex/")["Location"] == "/accounts/2fa/totp/activate/"


def test_staff_must_have_a_second_factor_when_the_platform_requires_it(demo, settings):
    settings.ISOTOPE_REQUIRE_2FA_STAFF = True
    staff = Client()
    staff.force_login(demo.admin)
    for path in ("/", "/admin/", "/t/acme/"):
        answer = staff.get(path)
        assert answer.status_code == 302, path
        assert answer["Location"] == "/accounts/2fa/totp/activate/", path
    member = Client()
    member.force_login(demo.bob)  # not staff: not asked
    assert member.get("/").status_code == 200
