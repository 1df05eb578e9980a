"""The notification centre: which events tell whom, preferences, email once, marking
read, the list page, and the live bell stream over the websocket."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core import mail
from django.test import Client

from monitoring import notifications
from monitoring.models import Notification
from monitoring.services import event_publish
from tests.monitoring.test_consumer import connected, run, session_cookie, subscribe

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def titles(user) -> list[str]:
    return list(Notification.objects.filter(user=user).values_list("title", flat=True))


def test_a_failed_vm_tells_every_member_once_per_event(demo):
    for _ in range(3):  # the same failure again within the fold window: one event
        event_publish(
            tenant=demo.acme,
            kind="vm",
            name="web1",
            reason="Failed",
            type="Warning",
            message="The host did not answer.",
        )
    for member in (demo.alice, demo.bob, demo.carol):
        assert titles(member) == ["VM failed: vm/web1"]
    assert titles(demo.dave) == titles(demo.admin) == []
    notice = Notification.objects.get(user=demo.bob)
    assert (notice.kind, notice.level, notice.link) == ("vm.failed", "danger", "/t/acme/vms/web1/")
    assert notice.message == "The host did not answer."


@pytest.mark.parametrize(
    ("kind", "reason", "expected"),
    [
        ("vm", "MigrationFailed", "migration.failed"),
        ("workload", "Failed", "workload.failed"),
        ("snapshot", "SnapshotFailed", "snapshot.failed"),  # the hook for snapshots
        ("vm", "SnapshotFailed", "snapshot.failed"),
        ("vm", "Started", None),
        ("workload", "MigrationFailed", None),
    ],
)
def test_event_rules(demo, kind, reason, expected):
    event_publish(tenant=demo.acme, kind=kind, name="x", reason=reason, message="m")
    kinds = set(Notification.objects.values_list("kind", flat=True))
    assert kinds == ({expected} if expected else set())


def test_preferences_choose_portal_and_email_per_kind(demo):
    notifications.notification_preference_set(
        user=demo.bob, kind="vm.failed", in_app=False, email=False
    )
    notifications.notification_preference_set(
        user=demo.carol, kind="vm.failed", in_app=False, email=True
    )
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Failed", message="Boom.")
    assert not Notification.objects.filter(user=demo.bob).exists()
    carol = Notification.objects.get(user=demo.carol)
    assert (carol.in_app, carol.email) == (False, True)
    assert notifications.unread_count(demo.carol.pk) == 0  # not in her bell
    assert notifications.notification_email_send(notification_id=carol.pk)
    assert mail.outbox[0].to == ["carol@example.com"]
    assert mail.outbox[0].subject == "[Isotope] VM failed: vm/web1"
    assert "/t/acme/vms/web1/" in mail.outbox[0].body


def test_the_profile_page_saves_preferences(demo):
    client = web(demo.bob)
    assert 'data-testid="notification-preferences"' in client.get("/profile/").content.decode()
    kinds = [k for k in notifications.preferences_of(demo.bob) if k != "vm.failed"]
    response = client.post(
        "/profile/notifications/", {"in_app": kinds + ["vm.failed"], "email": kinds}
    )
    assert response.status_code == 302
    chosen = notifications.preferences_of(demo.bob)
    assert chosen["vm.failed"] == {"in_app": True, "email": False}
    assert chosen["quota.request"] == {"in_app": True, "email": True}


def test_unknown_kind_is_refused(demo):
    with pytest.raises(notifications.ValidationError):
        notifications.notification_preference_set(
            user=demo.bob, kind="nope", in_app=True, email=True
        )


def test_marking_read_is_per_user_and_another_users_notification_is_not_found(demo):
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Failed", message="m")
    alices = Notification.objects.get(user=demo.alice)
    bobs = Notification.objects.get(user=demo.bob)
    client = web(demo.bob)
    assert client.post("/notifications/read/", {"uid": str(alices.uid)}).status_code == 404
    assert client.get(f"/notifications/{alices.uid}/").status_code == 404
    alices.refresh_from_db()
    assert alices.read is None
    response = client.get(f"/notifications/{bobs.uid}/")
    assert response.status_code == 302 and response.url == "/t/acme/vms/web1/"
    bobs.refresh_from_db()
    assert bobs.read is not None
    assert client.post("/notifications/read/", {"uid": "not-a-uuid"}).status_code == 404


def test_mark_all_read_and_the_list_page(demo):
    for name in ("a", "b"):
        event_publish(tenant=demo.acme, kind="vm", name=name, reason="Failed", message="m")
    client = web(demo.alice)
    page = client.get("/notifications/").content.decode()
    assert "VM failed: vm/a" in page and "VM failed: vm/b" in page
    bell = client.get("/").content.decode()
    assert 'data-testid="notification-count">2<' in bell
    response = client.post("/notifications/read/", {"next": "https://evil.example/"})
    assert response.url == "/notifications/"  # never elsewhere
    assert notifications.unread_count(demo.alice.pk) == 0
    assert notifications.unread_count(demo.bob.pk) == 2


def test_a_stored_link_to_another_site_is_not_followed(demo):
    [notice] = notifications.notify(
        users=[demo.alice], kind="vm.failed", title="t", link="//evil.example/x"
    )
    response = web(demo.alice).get(f"/notifications/{notice.uid}/")
    assert response.url == "/notifications/"


@pytest.mark.django_db(transaction=True)
def test_the_bell_stream_delivers_new_notifications_and_a_resync_snapshot(demo):
    cookie = session_cookie(demo.alice)
    notify = sync_to_async(notifications.notify)

    async def scenario():
        ws = await connected(cookie)
        subscribed = await subscribe(ws, notifications=True)
        assert subscribed["type"] == "subscribed"
        assert subscribed["stream"] == f"notify.{demo.alice.pk}"
        await notify(users=[demo.alice, demo.bob], kind="quota.request", title="Approved")
        message = await ws.receive_json_from(timeout=5)
        assert message["type"] == "notification"
        assert message["data"]["notification"]["title"] == "Approved"
        assert message["data"]["unread"] == 1
        await ws.send_json_to({"type": "resync", "stream": subscribed["stream"]})
        snapshot = await ws.receive_json_from(timeout=5)
        assert snapshot["type"] == "resync"
        assert [n["title"] for n in snapshot["data"]["notifications"]] == ["Approved"]
        assert await ws.receive_nothing(timeout=0.3)  # bob's copy is not sent to alice
        await ws.disconnect()

    run(scenario)


@pytest.mark.libvirt_test_driver
def test_a_vm_that_fails_and_a_migration_that_fails_notify_through_the_real_services(
    demo, make_host, tiny_image
):
    from compute.models import Migration, VirtualMachine
    from compute.services import migrations as migration_services
    from compute.services import vms as vm_services

    source, target = make_host("node-a"), make_host("node-b")
    vm = vm_services.vm_create(
        actor=demo.alice, tenant=demo.acme, name="web1", image=tiny_image, vcpus=1, memory_mib=256
    )
    vm_services.vm_fail(vm, "The host did not answer after 5 retries.")
    assert titles(demo.carol) == ["VM failed: vm/web1"]

    VirtualMachine.objects.filter(pk=vm.pk).update(phase="Running", host=source)
    migration = Migration.objects.create(
        tenant=demo.acme, vm=vm, vm_name="web1", source=source, target=target, phase="Running"
    )
    migration_services.migration_fail(migration, "the target refused the connection")
    notice = Notification.objects.get(user=demo.carol, kind="migration.failed")
    assert notice.title == "Live migration failed: vm/web1"
    assert "the target refused the connection" in notice.message


def test_an_email_reads_in_the_language_its_recipient_chose(demo):
    """carol chose Chinese on her profile: her email's message and its fixed lines are in
    Chinese; bob, who chose nothing, reads the same event in English."""
    from django.utils import translation

    from compute.texts import common
    from tenants.models import UserPreference

    UserPreference.objects.update_or_create(user=demo.carol, defaults={"language": "zh-hans"})
    for user in (demo.carol, demo.bob):
        notifications.notification_preference_set(
            user=user, kind="vm.failed", in_app=False, email=True
        )
    message = common.PHASE_IS_NOW % {"phase": "Failed"}
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Failed", message=message)
    bodies, subjects = {}, {}
    for user in (demo.carol, demo.bob):
        row = Notification.objects.get(user=user)
        assert notifications.notification_email_send(notification_id=row.pk)
        bodies[user.username] = mail.outbox[-1].body
        subjects[user.username] = mail.outbox[-1].subject
    assert subjects == {
        "carol": "[Isotope] 虚拟机故障：vm/web1",
        "bob": "[Isotope] VM failed: vm/web1",
    }
    with translation.override("zh-hans"):
        chinese = translation.gettext(common.PHASE_IS_NOW) % {
            "phase": translation.gettext("Failed")
        }
        profile = translation.gettext("Change what you are told about on your profile page.")
    assert chinese in bodies["carol"] and profile in bodies["carol"]
    assert message not in bodies["carol"]
    assert message in bodies["bob"]
    assert "Change what you are told about on your profile page." in bodies["bob"]
