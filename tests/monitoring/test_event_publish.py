"""event_publish: validation, folding of repeats, and what it sends after commit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from monitoring import live
from monitoring.groups import object_group, tenant_group
from monitoring.models import Event
from monitoring.services import event_publish, resource_forget, resource_publish
from portal.exceptions import ValidationError

pytestmark = pytest.mark.unit


def publish(tenant, **overrides):
    fields = {
        "tenant": tenant,
        "kind": "vm",
        "name": "web1",
        "reason": "Started",
        "message": "Guest is running.",
    }
    return event_publish(**{**fields, **overrides})


def test_a_repeat_within_the_window_folds_into_one_row_with_a_count(demo):
    first = publish(demo.acme)
    again = publish(demo.acme)
    third = publish(demo.acme)
    assert first.pk == again.pk == third.pk
    assert Event.objects.count() == 1
    third.refresh_from_db()
    assert third.count == 3
    assert third.last_seen >= third.first_seen == first.first_seen


def test_a_different_message_type_object_or_tenant_is_a_new_event(demo):
    publish(demo.acme)
    publish(demo.acme, message="Guest is running again.")
    publish(demo.acme, type="Warning")
    publish(demo.acme, name="web2")
    publish(demo.acme, kind="workload")
    publish(demo.globex)
    assert Event.objects.count() == 6
    assert set(Event.objects.values_list("count", flat=True)) == {1}


def test_a_repeat_after_the_window_starts_a_new_row(demo, settings):
    settings.ISOTOPE_EVENT_FOLD_SECONDS = 600
    old = publish(demo.acme)
    Event.objects.filter(pk=old.pk).update(
        first_seen=timezone.now() - timedelta(minutes=30),
        last_seen=timezone.now() - timedelta(minutes=11),
    )
    new = publish(demo.acme)
    assert new.pk != old.pk
    assert Event.objects.get(pk=old.pk).count == 1


def test_the_object_uid_is_kept_and_long_messages_are_cut(demo):
    event = publish(demo.acme, uid="1b4e28ba-2fa1-11d2-883f-0016d3cca427", message="x" * 5000)
    assert event.object_uid == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert len(event.message) == 1024


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reason", "started"),
        ("reason", "Not CamelCase"),
        ("reason", ""),
        ("type", "Error"),
        ("kind", "VM"),
        ("kind", ""),
        ("name", ""),
        ("name", "x" * 254),
        ("source", ""),
    ],
)
def test_malformed_events_are_refused_with_a_field_error_and_change_nothing(demo, field, value):
    with pytest.raises(ValidationError) as caught:
        publish(demo.acme, **{field: value})
    assert field in caught.value.errors
    assert Event.objects.count() == 0


def test_nothing_is_sent_when_the_callers_transaction_rolls_back(transactional_db, demo):
    stream = tenant_group("acme")
    with pytest.raises(RuntimeError), transaction.atomic():
        publish(demo.acme)
        raise RuntimeError("the caller failed")
    assert Event.objects.count() == 0
    assert live.seq_current(stream) == 0


def test_each_publish_after_commit_takes_the_next_seq_of_both_streams(transactional_db, demo):
    publish(demo.acme)
    publish(demo.acme, name="web2")
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "Running"})
    assert live.seq_current(tenant_group("acme")) == 3
    assert live.seq_current(object_group("acme", "vm", "web1")) == 2
    assert live.seq_current(object_group("acme", "vm", "web2")) == 1
    assert live.seq_current(tenant_group("globex")) == 0


def test_resource_states_are_kept_for_resyncs_until_forgotten(transactional_db, demo):
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "Starting"})
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "Running"})
    resource_publish(tenant=demo.acme, kind="vm", name="db", data={"phase": "Stopped"})
    assert live.state_snapshot("acme") == [
        {"kind": "vm", "name": "db", "data": {"phase": "Stopped"}},
        {"kind": "vm", "name": "web1", "data": {"phase": "Running"}},
    ]
    resource_forget(tenant=demo.acme, kind="vm", name="db")
    assert [item["name"] for item in live.state_snapshot("acme")] == ["web1"]
    assert live.state_snapshot("globex") == []


def test_a_state_published_late_never_replaces_a_newer_one_in_the_snapshot(transactional_db, demo):
    """Publishes run after their own commits, in threads and processes of their own: an
    older state can arrive last. A resyncing page must still get the newest."""

    def state(phase: str, version: int, uid: str = "u-1") -> dict:
        return {"uid": uid, "phase": phase, "resourceVersion": str(version)}

    def kept() -> dict:
        [item] = live.state_snapshot("acme", "vm", "web1")
        return item["data"]

    resource_publish(tenant=demo.acme, kind="vm", name="web1", data=state("Stopping", 7))
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data=state("Running", 6))
    assert kept() == state("Stopping", 7)
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data=state("Stopped", 8))
    assert kept() == state("Stopped", 8)
    # Another VM under the same name (deleted and created again) starts from 1.
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data=state("Pending", 1, "u-2"))
    assert kept() == state("Pending", 1, "u-2")


def test_a_resource_state_must_be_a_json_mapping(demo):
    with pytest.raises(ValidationError):
        resource_publish(tenant=demo.acme, kind="vm", name="web1", data=["Running"])
    with pytest.raises(ValidationError):
        resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"at": object()})


def test_object_groups_are_valid_channel_names_even_for_odd_names():
    assert object_group("acme", "vm", "web1") == "object.acme.vm.web1"
    odd = object_group("acme", "workload", "ünïcode name/" + "x" * 200)
    assert len(odd) < 100
    assert odd.startswith("object.acme.workload.h-")
    assert odd == object_group("acme", "workload", "ünïcode name/" + "x" * 200)


def test_a_transactions_messages_arrive_together_in_order_and_a_rolled_back_savepoints_never(
    transactional_db, demo
):
    """What one transaction publishes goes out after its commit in the order it was
    published, with consecutive seqs; what a savepoint rolled back publishes is neither
    sent nor kept for resyncs, and what follows it still is."""
    from asgiref.sync import sync_to_async

    from tests.monitoring.test_consumer import connected, run, session_cookie, subscribe

    cookie = session_cookie(demo.carol)

    def transaction_with_a_rolled_back_savepoint() -> None:
        with transaction.atomic():
            publish(demo.acme, reason="Scheduled")
            resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "Pending"})
            with pytest.raises(RuntimeError), transaction.atomic():
                resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "X"})
                publish(demo.acme, reason="Lost")
                raise RuntimeError("rolled back")
            resource_publish(tenant=demo.acme, kind="vm", name="db", data={"phase": "Pending"})
            publish(demo.acme, name="db", reason="Scheduled")
            # Nothing goes out before the commit.
            assert live.seq_current(tenant_group("acme")) == 0

    got: list[dict] = []

    async def scenario():
        tab = await connected(cookie)
        assert (await subscribe(tab, tenant="acme"))["type"] == "subscribed"
        await sync_to_async(transaction_with_a_rolled_back_savepoint)()
        got.extend([await tab.receive_json_from(timeout=10) for _ in range(4)])
        assert await tab.receive_nothing(timeout=0.3)
        await tab.disconnect()

    run(scenario)
    assert [m["seq"] for m in got] == [1, 2, 3, 4]
    assert [(m["type"], m["data"].get("reason") or m["data"]["state"]["phase"]) for m in got] == [
        ("event", "Scheduled"),
        ("resource", "Pending"),
        ("resource", "Pending"),
        ("event", "Scheduled"),
    ]
    names = [m["data"].get("name") or m["data"]["involvedObject"]["name"] for m in got]
    assert names == ["web1", "web1", "db", "db"]
    assert {(i["name"], i["data"]["phase"]) for i in live.state_snapshot("acme")} == {
        ("web1", "Pending"),
        ("db", "Pending"),
    }
    assert not Event.objects.filter(reason="Lost").exists()


def test_an_event_and_its_objects_state_published_in_a_transaction_go_out_in_one_hook(
    demo, django_capture_on_commit_callbacks
):
    """event_publish writes inside the caller's transaction without a savepoint of its own
    (``atomic(savepoint=False)``): the object's state published right after it joins its
    batch, one Redis round trip and one batch of sends after the commit."""
    with django_capture_on_commit_callbacks(execute=True) as hooks:
        with transaction.atomic():
            publish(demo.acme, reason="Scheduled")
            resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "Pending"})
    assert len(hooks) == 1
    assert live.seq_current(tenant_group("acme")) == 2
    assert {(i["name"], i["data"]["phase"]) for i in live.state_snapshot("acme")} == {
        ("web1", "Pending")
    }
