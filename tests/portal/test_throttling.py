"""Rate limits: sign-in lockouts (django-axes, PostgreSQL), failed API tokens and console
tickets (DRF throttles on the real Redis cache). Each refusal is a 429 with
``Retry-After`` the user can act on, and lockouts are audited."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tenants import services
from tenants.models import AuditLog
from tests.compute.conftest import tiny_image  # noqa: F401 - fixture
from tests.compute.test_console_tickets import vm  # noqa: F401 - fixture
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

LIMIT = 10  # the default ISOTOPE_LOGIN_FAILURE_LIMIT


def sign_in(client: Client, username: str, password: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password})


# --- Web and admin sign-in -------------------------------------------------------------
def test_twelve_failed_sign_ins_lock_the_username_out_with_a_clear_page(demo, settings):
    assert settings.AXES_FAILURE_LIMIT == LIMIT
    client = Client()
    answers = [sign_in(client, "alice", f"wrong-{n}") for n in range(12)]
    for response in answers[: LIMIT - 1]:
        assert response.status_code == 200
        assert b"Wrong username or password" in response.content
    for response in answers[LIMIT - 1 :]:
        assert response.status_code == 429
        assert response["Retry-After"] == "900"
        page = response.content.decode()
        assert 'data-testid="login-lockout"' in page
        assert "Too many failed sign-in attempts" in page and "15 minutes" in page
        assert "Wrong username or password" not in page
    # Locked: the right password is refused too, and nobody is signed in.
    response = sign_in(client, "alice", PASSWORD)
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    lockouts = AuditLog.objects.filter(action="auth.lockout")
    assert lockouts.count() == 1, "audited once, when the lockout starts"
    entry = lockouts.get()
    assert (entry.actor_name, entry.target, entry.outcome) == ("alice", "user/alice", "denied")
    assert entry.source_ip == "127.0.0.1" and entry.detail["failures"] == LIMIT


def test_failures_count_per_username_across_addresses_and_per_address_across_usernames(demo):
    for n in range(LIMIT):  # one username from ten addresses
        sign_in(Client(REMOTE_ADDR=f"198.51.100.{n}"), "bob", "wrong")
    assert sign_in(Client(REMOTE_ADDR="198.51.100.99"), "bob", PASSWORD).status_code == 429
    spray = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(LIMIT):  # one address trying ten usernames
        sign_in(spray, f"user{n}", "wrong")
    assert sign_in(spray, "carol", PASSWORD).status_code == 429
    # Others are untouched.
    fresh = Client(REMOTE_ADDR="192.0.2.1")
    assert sign_in(fresh, "carol", PASSWORD).status_code == 302
    assert "_auth_user_id" in fresh.session


def test_x_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_address_lockout(demo):
    client = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(LIMIT):
        client.post(
            "/login/",
            {"username": f"user{n}", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"10.9.9.{n}",
        )
    assert sign_in(client, "dave", PASSWORD).status_code == 429


def test_the_admin_sign_in_is_locked_out_the_same_way(demo):
    client = Client()
    for _ in range(LIMIT):
        response = sign_in(client, "admin", "wrong", "/admin/login/")
    assert response.status_code == 429 and response["Retry-After"] == "900"
    page = response.content.decode()
    assert 'data-testid="login-lockout"' in page and "Too many failed sign-in" in page
    assert 'name="username"' in page  # still the admin's sign-in form
    assert sign_in(client, "admin", PASSWORD, "/admin/login/").status_code == 429
    assert AuditLog.objects.filter(action="auth.lockout", target="user/admin").count() == 1


def test_a_platform_admin_unlocks_a_username_in_django_admin_and_it_is_audited(demo):
    for _ in range(LIMIT):
        sign_in(Client(), "bob", "wrong")
    assert sign_in(Client(), "bob", PASSWORD).status_code == 429
    staff = Client()
    staff.force_login(demo.admin)
    from axes.models import AccessAttempt

    listing = staff.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"bob" in listing.content
    rows = AccessAttempt.objects.filter(username="bob").values_list("pk", flat=True)
    response = staff.post(
        "/admin/axes/accessattempt/",
        {"action": "unlock", "_selected_action": [str(pk) for pk in rows]},
    )
    assert response.status_code == 302
    assert sign_in(Client(), "bob", PASSWORD).status_code == 302
    unlock = AuditLog.objects.get(action="auth.unlock")
    assert (unlock.actor_name, unlock.detail["username"]) == ("admin", "bob")


def test_the_unlock_service_needs_a_username_or_an_address(demo):
    from portal.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.login_lockout_reset(actor=demo.admin)


# --- API tokens --------------------------------------------------------------------------
def test_twelve_bad_tokens_lock_the_address_out_with_problem_json_and_retry_after(demo):
    _, good = services.token_create(user=demo.bob, name="ci")
    api = APIClient(REMOTE_ADDR="198.51.100.20")
    answers = [
        api.get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Token iso_{n:012x}_guess")
        for n in range(12)
    ]
    assert [r.status_code for r in answers[:LIMIT]] == [401] * LIMIT
    for response in answers[LIMIT:]:
        assert response.status_code == 429
        assert response["Content-Type"] == "application/problem+json"
        assert 1 <= int(response["Retry-After"]) <= 60
        body = response.json()
        assert body["status"] == 429 and body["type"].endswith("/throttled")
        assert "Too many failed token authentications" in body["detail"]
    # While locked, even a valid token from that address is refused: guessing stops.
    locked = api.get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Token {good}")
    assert locked.status_code == 429
    other = APIClient(REMOTE_ADDR="198.51.100.21")
    assert other.get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Token {good}").status_code == 200
    lockout = AuditLog.objects.get(action="api.token.lockout")
    assert (lockout.outcome, lockout.source_ip) == ("denied", "198.51.100.20")


def test_good_tokens_and_requests_without_one_are_not_counted(demo):
    _, good = services.token_create(user=demo.bob, name="ci")
    api = APIClient()
    for _ in range(LIMIT + 2):
        assert api.get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Token {good}").status_code == 200
        assert api.get("/api/v1/tenants/").status_code in (401, 403)
    assert not AuditLog.objects.filter(action="api.token.lockout").exists()


# --- Console tickets -------------------------------------------------------------------
def test_console_tickets_are_limited_per_user_across_the_page_and_the_api(demo, vm, settings):  # noqa: F811
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "console_ticket": "3/min",
        },
    }
    bob = APIClient()
    bob.force_login(demo.bob)
    url = "/api/v1/tenants/acme/virtualmachines/web/console/"
    assert bob.get(f"/t/acme/vms/{vm.name}/console/").status_code == 200  # page: one ticket
    assert [bob.post(url).status_code for _ in range(2)] == [201, 201]
    refused = bob.post(url)
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused["Retry-After"]) <= 60
    page = bob.get(f"/t/acme/vms/{vm.name}/console/")
    assert page.status_code == 429 and 1 <= int(page["Retry-After"]) <= 60
    assert b"Too many console connections were opened" in page.content
    assert b'"ticket"' not in page.content  # no ticket was issued for the refused page
    carol = APIClient()
    carol.force_login(demo.carol)
    assert carol.post(url).status_code == 201, "per user: others are not affected"
