"""The webhooks page: who may list, add and delete, and the secret shown once."""

from __future__ import annotations

import pytest
from django.test import Client

from monitoring.models import Webhook
from monitoring.services import webhook_create
from tenants.choices import AuditOutcome
from tenants.models import AuditLog

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

URL = "https://hooks.example.com/isotope"
ACTORS = ["anonymous", "erin", "carol", "bob", "alice", "dave", "admin"]
# What each actor gets on acme's webhook pages: admins act, members are refused,
# strangers see no tenant at all.
OUTCOME = {
    "anonymous": "login",
    "erin": 404,
    "carol": 403,
    "bob": 403,
    "alice": "ok",
    "dave": 404,
    "admin": "ok",
}


def client_for(demo, actor: str) -> Client:
    client = Client()
    user = {"erin": demo.outsider}.get(actor) or getattr(demo, actor, None)
    if actor != "anonymous":
        client.force_login(user)
    return client


def check(response, outcome, ok_status: int) -> None:
    if outcome == "login":
        assert response.status_code == 302 and response.url.startswith("/login/")
    elif outcome == "ok":
        assert response.status_code == ok_status
    else:
        assert response.status_code == outcome


@pytest.mark.parametrize("actor", ACTORS)
def test_only_admins_add_webhooks_and_see_the_secret_once(demo, actor):
    client = client_for(demo, actor)
    outcome = OUTCOME[actor]
    response = client.post("/t/acme/webhooks/add/", {"url": URL, "description": "CI"})
    check(response, outcome, 302)
    if outcome != "ok":
        assert not Webhook.objects.exists()
        assert not AuditLog.objects.filter(
            action="webhook.create", outcome=AuditOutcome.SUCCESS
        ).exists()
        if outcome == 403:
            assert AuditLog.objects.filter(
                action="webhook.manage", outcome=AuditOutcome.DENIED
            ).exists()
        return
    assert response.url == "/t/acme/webhooks/"
    page = client.get("/t/acme/webhooks/").content.decode()
    assert 'data-testid="webhook-secret"' in page and "whsec_" in page
    assert URL in page
    again = client.get("/t/acme/webhooks/").content.decode()
    assert "whsec_" not in again, "the secret is shown once"
    assert URL in again


@pytest.mark.parametrize("actor", ACTORS)
def test_only_admins_delete_webhooks(demo, actor):
    webhook, _ = webhook_create(actor=demo.alice, tenant=demo.acme, url=URL)
    response = client_for(demo, actor).post(f"/t/acme/webhooks/{webhook.uid}/delete/")
    check(response, OUTCOME[actor], 302)
    assert Webhook.objects.exists() is (OUTCOME[actor] != "ok")


def test_an_admin_cannot_delete_another_tenants_webhook_through_their_own(demo):
    webhook, _ = webhook_create(actor=demo.alice, tenant=demo.acme, url=URL)
    response = client_for(demo, "dave").post(
        f"/t/globex/webhooks/{webhook.uid}/delete/", follow=True
    )
    assert "No such webhook" in response.content.decode()
    assert Webhook.objects.filter(pk=webhook.pk).exists()


def test_a_bad_url_is_reported_and_nothing_is_added(demo):
    response = client_for(demo, "alice").post(
        "/t/acme/webhooks/add/", {"url": "ftp://x.example.com/"}, follow=True
    )
    assert "Enter a valid http:// or https:// URL." in response.content.decode()
    assert not Webhook.objects.exists()


def test_the_sidebar_links_webhooks_for_admins_only(demo):
    assert "/t/acme/webhooks/" in client_for(demo, "alice").get("/t/acme/").content.decode()
    assert "/t/acme/webhooks/" not in client_for(demo, "bob").get("/t/acme/").content.decode()
