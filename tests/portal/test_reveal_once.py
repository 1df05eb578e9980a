"""New API tokens and webhook secrets are shown once and never sit readable in the session
store (PostgreSQL sessions, inspected as an attacker with a database dump would)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from tenants.models import ApiToken

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def stored_session(client: Client) -> str:
    """Everything the session store holds for this browser: raw and decoded."""
    row = Session.objects.get(session_key=client.cookies[settings.SESSION_COOKIE_NAME].value)
    return row.session_data + repr(row.get_decoded())


def check_once(client: Client, created, page_url: str, pattern: str, cookie: str) -> str:
    """``created`` is the POST's response: the secret is nowhere in the session store,
    the next page shows it, the one after does not."""
    assert created.status_code == 302
    key_cookie = created.cookies[cookie]
    assert key_cookie["httponly"] and key_cookie["samesite"] == "Strict"
    assert int(key_cookie["max-age"]) <= 120
    before = stored_session(client)
    page = client.get(page_url)
    shown = re.search(pattern, page.content.decode())
    assert shown, "the new secret is shown on the next page"
    secret = shown.group(0)
    assert secret not in before
    assert secret not in stored_session(client)
    assert page["Cache-Control"] == "no-store"
    assert page.cookies[cookie]["max-age"] == 0  # the browser's half is gone too
    again = client.get(page_url).content.decode()
    assert secret not in again
    return secret


def test_a_new_api_token_is_shown_once_and_never_readable_in_the_session(demo):
    client = Client()
    client.force_login(demo.bob)
    created = client.post("/profile/", {"name": "ci"})
    key = check_once(
        client, created, "/profile/", r"iso_[0-9a-f]{12}_[\w-]{20,}", "isotope_reveal_api_token"
    )
    assert ApiToken.objects.get(name="ci").key_id in key
    api = Client()
    assert api.get("/api/v1/tenants/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


def test_a_new_webhook_secret_is_shown_once_and_never_readable_in_the_session(demo, settings):
    settings.ISOTOPE_WEBHOOK_ALLOW_PRIVATE = True
    client = Client()
    client.force_login(demo.alice)
    created = client.post("/t/acme/webhooks/add/", {"url": "http://127.0.0.1:9/hook"})
    check_once(
        client, created, "/t/acme/webhooks/", r"whsec_[\w-]{20,}", "isotope_reveal_webhook_secret"
    )


def test_the_session_half_alone_reveals_nothing(demo):
    """Another browser holding the session (e.g. a stolen session cookie) but not the
    key cookie sees no token, and the stash is spent."""
    client = Client()
    client.force_login(demo.bob)
    client.post("/profile/", {"name": "ci"})
    thief = Client()
    thief.cookies[settings.SESSION_COOKIE_NAME] = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert b'data-testid="new-token"' not in thief.get("/profile/").content
    assert b'data-testid="new-token"' not in client.get("/profile/").content
