"""Tenant webhooks: creation rules, signed deliveries, retries with backoff, failure."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitoring import services
from monitoring.choices import DeliveryStatus
from monitoring.models import Webhook, WebhookDelivery
from monitoring.services import event_publish, webhook_create, webhook_delete
from portal.celery import app
from portal.exceptions import Conflict, NotFound, PermissionDenied, ValidationError
from tenants.models import AuditLog
from tests.conftest import wait_for
from tests.monitoring.hooks import Receiver, serve

pytestmark = pytest.mark.unit


@pytest.fixture
def receiver():
    """A local HTTPS-less receiver; ``receiver.answers`` sets its replies."""
    hook = Receiver()
    server = serve(hook)
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager(settings):
    """Run Celery tasks inline, retries included, with no backoff wait."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    settings.ISOTOPE_WEBHOOK_RETRY_BASE = 0
    settings.ISOTOPE_WEBHOOK_ALLOW_PRIVATE = True
    yield
    app.conf.task_always_eager = before


def verify(secret: str, request) -> dict:
    """What a receiver does: recompute the signature over timestamp + raw body."""
    stamp = request.headers["X-Isotope-Timestamp"]
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + request.body, hashlib.sha256)
    assert hmac.compare_digest(request.headers["X-Isotope-Signature"], "sha256=" + mac.hexdigest())
    assert abs(int(stamp) - time.time()) < 60
    return json.loads(request.body)


def publish(demo, **overrides):
    fields = {
        "kind": "vm",
        "name": "web1",
        "type": "Warning",
        "reason": "Failed",
        "message": "Guest crashed.",
    }
    return event_publish(tenant=demo.acme, **{**fields, **overrides})


def test_an_event_is_posted_to_the_webhook_signed_with_its_secret(
    transactional_db, demo, receiver, eager
):
    webhook, secret = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    event = publish(demo)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/isotope"
    assert request.headers["Content-Type"] == "application/json"
    payload = verify(secret, request)
    assert payload["type"] == "event"
    assert payload["tenant"] == "acme"
    assert payload["event"]["uid"] == str(event.uid)
    assert payload["event"]["reason"] == "Failed"
    assert payload["event"]["type"] == "Warning"
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert request.headers["X-Isotope-Delivery"] == str(delivery.uid)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        DeliveryStatus.SUCCEEDED,
        1,
        200,
    )
    assert delivery.finished is not None


def test_a_forged_body_does_not_match_the_signature(transactional_db, demo, receiver, eager):
    _, secret = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    publish(demo)
    request = receiver.requests[0]
    request.body = request.body.replace(b"Guest crashed.", b"All is well.")
    with pytest.raises(AssertionError):
        verify(secret, request)


def test_a_failing_endpoint_is_retried_and_the_delivery_fails_after_max_attempts(
    transactional_db, demo, receiver, eager, settings
):
    settings.ISOTOPE_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.answers = [500]
    webhook, secret = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    publish(demo)

    assert len(receiver.requests) == 3
    assert len({r.headers["X-Isotope-Delivery"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1  # the same payload every time
    for request in receiver.requests:
        verify(secret, request)
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3
    assert delivery.last_status_code == 500
    assert "HTTP 500" in delivery.last_error
    # Attempting a finished delivery again changes nothing (idempotent task).
    services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert len(receiver.requests) == 3


def test_a_real_worker_retries_with_backoff_until_the_endpoint_recovers(
    demo, receiver, celery_worker, settings
):
    settings.ISOTOPE_WEBHOOK_RETRY_BASE = 0.2
    settings.ISOTOPE_WEBHOOK_ALLOW_PRIVATE = True
    receiver.answers = [503, 503, 200]
    webhook, secret = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)

    # Publishing must not wait for the webhook: with the receiver holding every answer
    # (and a 60 s client timeout), publish() still returns. The 30 s bound only ends a
    # broken run; publishing takes milliseconds, waiting would take at least 60 s.
    settings.ISOTOPE_WEBHOOK_TIMEOUT = 60
    release = threading.Event()
    receiver.on_request = lambda request: release.wait(120)

    def publisher() -> None:
        try:
            publish(demo)
        finally:
            connection.close()

    thread = threading.Thread(target=publisher)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "publishing waited for the webhook"
    release.set()

    delivery = wait_for(
        lambda: WebhookDelivery.objects.filter(
            webhook=webhook, status=DeliveryStatus.SUCCEEDED
        ).first(),
        timeout=20,
        message="the delivery never succeeded",
    )
    assert delivery.attempts == 3
    assert delivery.last_status_code == 200
    assert [verify(secret, r)["event"]["reason"] for r in receiver.requests] == ["Failed"] * 3
    # Backoff: at least 0.2 s, then 0.4 s between the attempts.
    assert (delivery.last_attempt - delivery.created).total_seconds() >= 0.6


def test_redirects_are_not_followed(transactional_db, demo, receiver, eager, settings):
    settings.ISOTOPE_WEBHOOK_MAX_ATTEMPTS = 1
    receiver.answers = [302]
    webhook, _ = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    publish(demo)
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code == 302
    assert "redirects are not followed" in delivery.last_error


def test_every_active_webhook_of_the_tenant_and_no_other_gets_the_event(
    transactional_db, demo, eager
):
    hooks = [Receiver(), Receiver(), Receiver()]
    servers = [serve(h) for h in hooks]
    try:
        webhook_create(actor=demo.alice, tenant=demo.acme, url=hooks[0].url)
        paused, _ = webhook_create(actor=demo.alice, tenant=demo.acme, url=hooks[1].url)
        Webhook.objects.filter(pk=paused.pk).update(active=False)
        webhook_create(actor=demo.dave, tenant=demo.globex, url=hooks[2].url)
        publish(demo)
        assert [len(h.requests) for h in hooks] == [1, 0, 0]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def pending_delivery(demo, receiver, next_attempt) -> WebhookDelivery:
    """An event's delivery to ``receiver`` left pending with no task (as if the process
    died between commit and enqueue), due at ``next_attempt``."""
    event = publish(demo)
    webhook, _ = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    return WebhookDelivery.objects.create(
        webhook=webhook,
        event=event,
        payload={"type": "event", "tenant": "acme", "event": {"uid": str(event.uid)}},
        next_attempt=next_attempt,
    )


def test_an_overdue_pending_delivery_is_requeued_by_the_sweeper(
    transactional_db, demo, receiver, eager
):
    delivery = pending_delivery(demo, receiver, timezone.now())
    assert services.webhook_deliveries_requeue() == 0  # not overdue yet
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt=timezone.now() - timedelta(minutes=5)
    )
    assert services.webhook_deliveries_requeue() == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert len(receiver.requests) == 1


def test_the_sweeper_leaves_a_delivery_whose_attempt_a_worker_is_taking(
    transactional_db, demo, receiver
):
    """An overdue delivery that a worker is claiming as the sweeper runs: the sweeper
    read it overdue, waited for the worker's lock and then pushed its next attempt to
    now, cutting the worker's lease short, so a second worker could send it again
    while the first was still sending."""
    from django.db import transaction

    from tests.conftest import postgres_only
    from tests.races import run_in_thread, waiting_on_a_lock

    postgres_only()
    delivery = pending_delivery(demo, receiver, timezone.now() - timedelta(minutes=5))
    claimed, release = threading.Event(), threading.Event()

    def worker():
        with transaction.atomic():  # the claim's row lock held until the attempt is counted
            services._delivery_claim(delivery.pk)
            claimed.set()
            release.wait(10)

    taking = run_in_thread(worker)
    assert claimed.wait(10)
    sweep = run_in_thread(services.webhook_deliveries_requeue)
    wait_for(lambda: "result" in sweep or waiting_on_a_lock(), 10, 0.02)
    release.set()
    for outcome in (taking, sweep):
        outcome["thread"].join(10)
    assert "error" not in sweep and "error" not in taking, (sweep, taking)
    assert sweep["result"] == 0
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.next_attempt > timezone.now() + timedelta(seconds=30)  # the lease


def test_the_secret_is_stored_encrypted_and_survives_a_key_rotation_with_fallback(
    transactional_db, demo, receiver, eager, settings
):
    webhook, secret = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    stored = Webhook.objects.get(pk=webhook.pk).secret_encrypted
    assert secret not in stored and secret.removeprefix("whsec_") not in stored

    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = [old]
    publish(demo)
    verify(secret, receiver.requests[-1])

    settings.SECRET_KEY_FALLBACKS = []
    publish(demo, reason="Recovered", type="Normal")
    delivery = WebhookDelivery.objects.filter(webhook=webhook).order_by("-id").first()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert "re-create the webhook" in delivery.last_error
    assert len(receiver.requests) == 1


# --- Creating and deleting ----------------------------------------------------------------
def test_only_the_tenants_admins_create_and_delete_webhooks_and_both_are_audited(db, demo):
    for user in (demo.bob, demo.carol, demo.dave, demo.outsider):
        with pytest.raises(PermissionDenied):
            webhook_create(actor=user, tenant=demo.acme, url="https://hooks.example.com/a")
    assert not Webhook.objects.exists()

    webhook, secret = webhook_create(
        actor=demo.alice, tenant=demo.acme, url="https://hooks.example.com/a"
    )
    assert secret.startswith("whsec_") and len(secret) > 40
    assert webhook.created_by == demo.alice
    created = AuditLog.objects.get(action="webhook.create")
    assert (created.actor, created.tenant, created.detail["url"]) == (
        demo.alice,
        demo.acme,
        "https://hooks.example.com/a",
    )
    with pytest.raises(PermissionDenied):
        webhook_delete(actor=demo.carol, tenant=demo.acme, webhook_uid=str(webhook.uid))
    with pytest.raises(NotFound):
        webhook_delete(actor=demo.dave, tenant=demo.globex, webhook_uid=str(webhook.uid))
    webhook_delete(actor=demo.alice, tenant=demo.acme, webhook_uid=str(webhook.uid))
    assert not Webhook.objects.exists()
    assert AuditLog.objects.filter(action="webhook.delete", actor=demo.alice).count() == 1


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "Enter a URL"),
        ("ftp://hooks.example.com/a", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("https://user:pw@hooks.example.com/a", "Credentials"),
        ("https://hooks.example.com/" + "a" * 500, "at most 500"),
        ("http://127.0.0.1:8000/admin/", "non-public address"),
        ("http://10.1.2.3/", "non-public address"),
        ("http://[::1]/", "non-public address"),
        ("http://169.254.169.254/latest/meta-data/", "non-public address"),
    ],
)
def test_bad_or_internal_urls_are_refused_with_a_field_error(db, demo, settings, url, says):
    settings.ISOTOPE_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError) as caught:
        webhook_create(actor=demo.alice, tenant=demo.acme, url=url)
    assert says in caught.value.errors["url"][0]
    assert not Webhook.objects.exists()


def test_the_same_url_twice_is_a_conflict(db, demo):
    webhook_create(actor=demo.alice, tenant=demo.acme, url="https://hooks.example.com/a")
    with pytest.raises(Conflict):
        webhook_create(actor=demo.alice, tenant=demo.acme, url="https://hooks.example.com/a")
    # Another tenant may use the same URL.
    webhook_create(actor=demo.dave, tenant=demo.globex, url="https://hooks.example.com/a")


def test_the_webhook_goes_out_when_the_live_push_fails(
    transactional_db, demo, receiver, eager, settings, caplog
):
    """The live push and the webhook delivery share one on-commit hook: a Redis the push
    cannot reach (a port nothing listens on, for this test only) is logged, and the
    delivery is still made."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    webhook, secret = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port}/0"
    publish(demo)
    assert "could not push 1 message(s)" in caplog.text
    assert len(receiver.requests) == 1
    assert verify(secret, receiver.requests[0])["event"]["reason"] == "Failed"
    assert WebhookDelivery.objects.get(webhook=webhook).status == DeliveryStatus.SUCCEEDED


def test_a_vm_create_posts_its_first_events_to_the_webhook(
    transactional_db, demo, receiver, eager, make_host, tiny_image, monkeypatch
):
    """A create writes its events with its other rows (``portal.sql.batch``; its root
    volume's and its own in one statement): the tenant's webhook still gets each of
    them, once, after the commit."""
    from compute.services import dispatch
    from compute.services import vms as vm_services

    monkeypatch.setattr(dispatch, "provision_request", lambda *vm_ids: None)  # no worker
    make_host("node-a")
    webhook, secret = webhook_create(actor=demo.alice, tenant=demo.acme, url=receiver.url)
    vm = vm_services.vm_create(
        actor=demo.alice,
        tenant=demo.acme,
        name="web1",
        image="tiny",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
    )
    # Its event, its root volume's and its tenant's first network's, each once.
    events = [verify(secret, request)["event"] for request in receiver.requests]
    by_kind = {e["involvedObject"]["kind"]: e for e in events}
    assert sorted(e["involvedObject"]["kind"] for e in events) == ["network", "vm", "volume"]
    assert (by_kind["vm"]["reason"], by_kind["vm"]["involvedObject"]["uid"]) == (
        "Scheduled",
        str(vm.uid),
    )
    assert by_kind["volume"]["involvedObject"]["name"] == "web1-root"
    deliveries = WebhookDelivery.objects.filter(webhook=webhook)
    assert sorted(deliveries.values_list("event__reason", flat=True)) == sorted(
        e["reason"] for e in events
    )
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED}
