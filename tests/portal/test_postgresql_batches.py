"""PostgreSQL takes at most 65,535 values per statement once they are sent apart from the
SQL (server-side binding, ``ISOTOPE_DB_PREPARE``): every batch Django sizes stays within
that (``portal/postgresql``). Deletes cascading over more rows: tests/monitoring/
test_events_prune.py."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.utils import timezone

from monitoring.models import Event
from tests.conftest import postgres_only

pytestmark = pytest.mark.unit


def test_a_bulk_update_of_more_values_than_one_statement_carries(demo):
    """25,000 rows × 3 fields: 7 values per row in Django's statement (a WHEN key THEN
    value per field, the key in IN), 175,000 in all, in batches that each stay within
    the limit."""
    postgres_only()
    assert connection.settings_dict["OPTIONS"].get("server_side_binding") is True
    now = timezone.now()
    events = Event.objects.bulk_create(
        [
            Event(
                uid=uuid.uuid4(),
                tenant=demo.acme,
                reason="Started",
                kind="vm",
                name=f"vm-{i}",
                first_seen=now,
                last_seen=now,
            )
            for i in range(25_000)
        ],
        batch_size=10_000,
    )
    for event in events:
        event.reason, event.message, event.kind = "Stopped", f"Stopped {event.name}.", "pod"

    assert Event.objects.bulk_update(events, ["reason", "message", "kind"]) == 25_000

    assert Event.objects.filter(reason="Stopped", kind="pod").count() == 25_000
    assert Event.objects.get(name="vm-24999").message == "Stopped vm-24999."
