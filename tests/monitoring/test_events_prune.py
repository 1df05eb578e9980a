"""More events than one PostgreSQL statement carries values for (65,535 once they are sent
apart from the SQL, ``ISOTOPE_DB_PREPARE``): the hourly prune deletes every event past the
retention, however many there are, with their webhook deliveries, and keeps the rest; a
bulk update of as many goes through. Every batch Django sizes stays within the limit
(``portal/postgresql``)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitoring import tasks
from monitoring.models import Event, Webhook, WebhookDelivery
from tests.conftest import postgres_only

pytestmark = pytest.mark.unit

OLD = 70_000  # more than the 65,535 values one statement may carry on PostgreSQL
ROWS = 10_000  # a bulk update of 3 fields: 7 values per row, 70,000 in all


def _events(tenant, n: int, seen, prefix: str) -> list[Event]:
    return Event.objects.bulk_create(
        [
            Event(
                uid=uuid.uuid4(),
                tenant=tenant,
                reason="Started",
                message="Started.",
                kind="vm",
                name=f"{prefix}-{i}",
                first_seen=seen,
                last_seen=seen,
            )
            for i in range(n)
        ],
        batch_size=10_000,
    )


def test_the_prune_deletes_more_old_events_than_one_statement_can_name(demo, settings):
    """Django reads the deliveries of every event it deletes with one IN list of their
    ids: with the values sent apart from the SQL, 70,000 of them failed ("number of
    parameters must be between 0 and 65535") and the hourly prune never pruned again."""
    postgres_only()
    assert connection.settings_dict["OPTIONS"].get("server_side_binding") is True
    settings.ISOTOPE_EVENT_RETENTION_DAYS = 30
    old = _events(demo.acme, OLD, timezone.now() - timedelta(days=40), "old")
    recent = _events(demo.acme, 3, timezone.now() - timedelta(days=1), "recent")
    hook = Webhook.objects.create(tenant=demo.acme, url="https://hooks.example.com/x")
    WebhookDelivery.objects.create(webhook=hook, event=old[0], payload={})
    kept = WebhookDelivery.objects.create(webhook=hook, event=recent[0], payload={})

    assert tasks.events_prune() == OLD + 1  # the events and the old event's delivery

    assert set(Event.objects.values_list("pk", flat=True)) == {e.pk for e in recent}
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_bulk_update_of_more_values_than_one_statement_carries(demo):
    """10,000 rows × 3 fields: 7 values per row in Django's statement (a WHEN key THEN
    value per field, the key in IN), 70,000 in all, in batches that each stay within
    the limit. (Not more rows: each batch's CASE is read once per row it updates, so a
    batch costs PostgreSQL the square of its rows; 25,000 rows took 49 s of the suite.)"""
    postgres_only()
    assert connection.settings_dict["OPTIONS"].get("server_side_binding") is True
    events = _events(demo.acme, ROWS, timezone.now(), "vm")
    for event in events:
        event.reason, event.message, event.kind = "Stopped", f"Stopped {event.name}.", "pod"

    assert Event.objects.bulk_update(events, ["reason", "message", "kind"]) == ROWS

    assert Event.objects.filter(reason="Stopped", kind="pod").count() == ROWS
    assert Event.objects.get(name=f"vm-{ROWS - 1}").message == f"Stopped vm-{ROWS - 1}."
