"""The /ws/ consumer through portal.asgi.application, with the real Redis channel layer."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from monitoring.services import event_publish, resource_publish
from portal.asgi import application
from tenants import services as tenant_services
from tenants.choices import Role

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

ORIGIN = "http://testserver"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def socket(cookie: str | None = None, origin: str = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/", headers=headers)


def run(scenario):
    """Run an async scenario from a sync test.

    Playwright's sync API (browser tests earlier in the session) leaves an event loop
    running in the main thread, where ``async_to_sync`` refuses to run: use a helper
    thread then. The database is transactional, so every thread sees the same rows.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(scenario)()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(async_to_sync(scenario)).result()


async def connected(cookie: str) -> WebsocketCommunicator:
    ws = socket(cookie)
    ok, _ = await ws.connect()
    assert ok
    return ws


async def subscribe(ws, **target) -> dict:
    await ws.send_json_to({"type": "subscribe", **target})
    return await ws.receive_json_from()


publish = sync_to_async(event_publish)


def test_an_anonymous_socket_is_closed_with_4401(demo):
    async def scenario():
        ws = socket()
        ok, _ = await ws.connect()
        assert ok  # accepted only to say why it closes
        closing = await ws.receive_output()
        assert closing == {"type": "websocket.close", "code": 4401}

    run(scenario)


def test_a_socket_from_a_foreign_origin_is_refused(demo, settings):
    # ALLOWED_HOSTS = * as in development: only the exact origin (or a trusted one) passes.
    settings.ALLOWED_HOSTS = ["*"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.com"]
    cookie = session_cookie(demo.alice)

    async def scenario():
        for origin in ("http://evil.example", "http://testserver:8001", "null"):
            evil = socket(cookie, origin=origin)
            ok, _ = await evil.connect()
            assert not ok, origin
        missing = WebsocketCommunicator(application, "/ws/", headers=[(b"host", b"testserver")])
        ok, _ = await missing.connect()
        assert not ok
        for origin in (ORIGIN, "https://portal.example.com"):
            good = socket(cookie, origin=origin)
            ok, _ = await good.connect()
            assert ok, origin
            await good.disconnect()

    run(scenario)


def test_another_tenant_is_refused_exactly_like_a_tenant_that_does_not_exist(demo):
    cookie = session_cookie(demo.alice)

    async def scenario():
        ws = await connected(cookie)
        foreign = await subscribe(ws, tenant="globex")
        missing = await subscribe(ws, tenant="initech")
        assert foreign["type"] == "error" and foreign["code"] == "not_found"
        assert json.loads(json.dumps(foreign).replace("globex", "initech")) == missing
        foreign_object = await subscribe(ws, tenant="globex", kind="vm", name="db")
        assert foreign_object["message"] == foreign["message"]
        await publish(tenant=demo.globex, kind="vm", name="db", reason="Started", message="up")
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()

    run(scenario)


def test_subscribers_get_events_and_states_with_a_sequence_number_per_stream(demo):
    cookie = session_cookie(demo.carol)

    async def scenario():
        ws = await connected(cookie)
        assert await subscribe(ws, tenant="acme") == {
            "type": "subscribed",
            "stream": "tenant.acme",
            "seq": 0,
        }
        assert await subscribe(ws, tenant="acme", kind="vm", name="web1") == {
            "type": "subscribed",
            "stream": "object.acme.vm.web1",
            "seq": 0,
        }
        await publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
        got = [await ws.receive_json_from(), await ws.receive_json_from()]
        assert sorted((m["stream"], m["seq"]) for m in got) == [
            ("object.acme.vm.web1", 1),
            ("tenant.acme", 1),
        ]
        assert {m["type"] for m in got} == {"event"}
        assert got[0]["data"]["reason"] == "Started"
        assert got[0]["data"]["involvedObject"] == {"kind": "vm", "name": "web1", "uid": ""}

        await publish(tenant=demo.acme, kind="vm", name="web2", reason="Started", message="up")
        other = await ws.receive_json_from()
        assert (other["stream"], other["seq"]) == ("tenant.acme", 2)
        assert await ws.receive_nothing(timeout=0.2)

        await sync_to_async(resource_publish)(
            tenant=demo.acme, kind="vm", name="web1", data={"phase": "Running", "actions": []}
        )
        states = [await ws.receive_json_from(), await ws.receive_json_from()]
        assert sorted((m["stream"], m["seq"]) for m in states) == [
            ("object.acme.vm.web1", 2),
            ("tenant.acme", 3),
        ]
        assert states[0]["type"] == "resource"
        assert states[0]["data"] == {
            "tenant": "acme",
            "kind": "vm",
            "name": "web1",
            "state": {"phase": "Running", "actions": []},
        }

        await ws.send_json_to({"type": "unsubscribe", "stream": "object.acme.vm.web1"})
        assert await ws.receive_json_from() == {
            "type": "unsubscribed",
            "stream": "object.acme.vm.web1",
            "reason": "client",
        }
        await publish(tenant=demo.acme, kind="vm", name="web1", reason="Stopped", message="down")
        only = await ws.receive_json_from()
        assert (only["stream"], only["seq"]) == ("tenant.acme", 4)
        assert await ws.receive_nothing(timeout=0.2)
        await ws.disconnect()

    run(scenario)


def test_a_removed_member_is_dropped_live_and_gets_nothing_more(demo):
    cookie = session_cookie(demo.carol)

    async def scenario():
        ws = await connected(cookie)
        await subscribe(ws, tenant="acme")
        await subscribe(ws, tenant="acme", kind="vm", name="web1")
        await sync_to_async(tenant_services.membership_remove)(
            actor=demo.alice, tenant=demo.acme, user=demo.carol
        )
        dropped = [await ws.receive_json_from(), await ws.receive_json_from()]
        assert sorted(m["stream"] for m in dropped) == ["object.acme.vm.web1", "tenant.acme"]
        assert {(m["type"], m["reason"]) for m in dropped} == {("unsubscribed", "access")}
        await publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
        assert await ws.receive_nothing(timeout=0.3)
        again = await subscribe(ws, tenant="acme")
        assert again["code"] == "not_found"
        await ws.disconnect()

    run(scenario)


def test_a_tenant_requiring_2fa_streams_only_to_sessions_with_a_second_factor(demo, settings):
    """A password-only session kept watching (and could start watching) a tenant whose
    pages send it to enrol a second factor. Its streams go when the requirement is
    turned on; a session that signed in with one keeps its own."""
    from tests.portal.identity.test_two_factor import enrol, password_session

    settings.MFA_TOTP_TOLERANCE = 1
    weak = session_cookie(demo.carol)
    strong_browser = password_session("bob")
    enrol(strong_browser)
    strong = strong_browser.cookies[settings.SESSION_COOKIE_NAME].value

    async def scenario():
        carol, bob = await connected(weak), await connected(strong)
        for ws in (carol, bob):
            assert (await subscribe(ws, tenant="acme"))["type"] == "subscribed"
        await sync_to_async(tenant_services.tenant_set_require_2fa)(
            actor=demo.admin, tenant=demo.acme, required=True
        )
        dropped = await carol.receive_json_from()
        assert (dropped["type"], dropped["reason"]) == ("unsubscribed", "access")
        again = await subscribe(carol, tenant="acme", kind="vm", name="web1")
        assert (again["type"], again["code"]) == ("error", "not_found")
        await publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
        assert await carol.receive_nothing(timeout=0.3)
        event = await bob.receive_json_from()
        assert event["type"] == "event" and event["data"]["reason"] == "Started"
        assert (await subscribe(carol, tenant="globex"))["code"] == "not_found"
        for ws in (carol, bob):
            await ws.disconnect()

    run(scenario)


def test_each_subscribe_reads_the_user_afresh(demo):
    """A user switched off while their socket is open cannot subscribe any more (and can
    again once switched back on); platform staff watch any tenant that exists."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    carol, staff = session_cookie(demo.carol), session_cookie(demo.admin)

    async def scenario():
        ws = await connected(carol)
        assert (await subscribe(ws, tenant="acme"))["type"] == "subscribed"
        await sync_to_async(users.filter(pk=demo.carol.pk).update)(is_active=False)
        off = await subscribe(ws, tenant="acme", kind="vm", name="web1")
        assert (off["type"], off["code"]) == ("error", "not_found")
        await sync_to_async(users.filter(pk=demo.carol.pk).update)(is_active=True)
        back = await subscribe(ws, tenant="acme", kind="vm", name="web1")
        assert back["type"] == "subscribed"
        await ws.disconnect()

        ws = await connected(staff)
        for slug in ("acme", "globex"):
            assert (await subscribe(ws, tenant=slug))["type"] == "subscribed"
        assert (await subscribe(ws, tenant="initech"))["code"] == "not_found"
        await ws.disconnect()

    run(scenario)


def test_a_role_change_that_still_allows_viewing_keeps_the_subscription(demo):
    cookie = session_cookie(demo.carol)

    async def scenario():
        ws = await connected(cookie)
        await subscribe(ws, tenant="acme")
        await sync_to_async(tenant_services.membership_set_role)(
            actor=demo.alice, tenant=demo.acme, user=demo.carol, role=Role.OPERATOR
        )
        await publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
        message = await ws.receive_json_from()
        assert (message["type"], message["seq"]) == ("event", 1)
        await ws.disconnect()

    run(scenario)


def test_resync_returns_the_current_state_as_of_the_latest_seq(demo):
    cookie = session_cookie(demo.bob)
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
    event_publish(tenant=demo.acme, kind="vm", name="web2", reason="Failed", message="x")
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "Running"})
    event_publish(tenant=demo.globex, kind="vm", name="db", reason="Started", message="up")

    async def scenario():
        ws = await connected(cookie)
        await ws.send_json_to({"type": "resync", "stream": "tenant.acme"})
        refused = await ws.receive_json_from()
        assert (refused["type"], refused["code"]) == ("error", "not_subscribed")

        assert (await subscribe(ws, tenant="acme"))["seq"] == 3
        await ws.send_json_to({"type": "resync", "stream": "tenant.acme"})
        snapshot = await ws.receive_json_from()
        assert snapshot["type"] == "resync"
        assert snapshot["seq"] == 3
        assert [e["involvedObject"]["name"] for e in snapshot["data"]["events"]] == [
            "web2",
            "web1",
        ]
        assert snapshot["data"]["resources"] == [
            {"kind": "vm", "name": "web1", "data": {"phase": "Running"}}
        ]

        await subscribe(ws, tenant="acme", kind="vm", name="web2")
        await ws.send_json_to({"type": "resync", "stream": "object.acme.vm.web2"})
        one = await ws.receive_json_from()
        assert [e["reason"] for e in one["data"]["events"]] == ["Failed"]
        assert one["data"]["resources"] == []
        await ws.disconnect()

    run(scenario)


def test_tabs_resyncing_at_the_same_seq_share_one_read_and_a_newer_seq_reads_again(
    demo, monkeypatch
):
    """A reconnect storm (a web process died, its tabs came back here): the tabs that
    resync a tenant's stream at the same seq get the same state, read and encoded once
    by the process, one after another or at the same moment; after a new event and a
    state change they get the new state, read once more."""
    from monitoring import consumers

    reads = []
    read = consumers.LiveConsumer.resync_text

    async def counted(self, stream, target, seq, since=None):
        reads.append((stream, seq))
        return await read(self, stream, target, seq, since)

    monkeypatch.setattr(consumers.LiveConsumer, "resync_text", counted)
    cookies = [session_cookie(user) for user in (demo.alice, demo.bob, demo.carol)]
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
    resource_publish(tenant=demo.acme, kind="vm", name="web1", data={"phase": "Running"})

    async def resync(tabs) -> list[dict]:
        await asyncio.gather(
            *(ws.send_json_to({"type": "resync", "stream": "tenant.acme"}) for ws in tabs)
        )
        return [await ws.receive_json_from(timeout=5) for ws in tabs]

    async def scenario():
        tabs = [await connected(cookie) for cookie in cookies]
        for ws in tabs:
            assert (await subscribe(ws, tenant="acme"))["seq"] == 2
        first = []
        for ws in tabs:  # one after another
            first += await resync([ws])
        assert first[0] == first[1] == first[2]
        assert (first[0]["type"], first[0]["seq"]) == ("resync", 2)
        assert [e["involvedObject"]["name"] for e in first[0]["data"]["events"]] == ["web1"]
        assert first[0]["data"]["resources"] == [
            {"kind": "vm", "name": "web1", "data": {"phase": "Running"}}
        ]
        assert reads == [("tenant.acme", 2)]

        await publish(tenant=demo.acme, kind="vm", name="web2", reason="Failed", message="x")
        await sync_to_async(resource_publish)(
            tenant=demo.acme, kind="vm", name="web1", data={"phase": "Stopped"}
        )
        for ws in tabs:  # the two live messages
            assert [(await ws.receive_json_from(timeout=5))["seq"] for _ in "ab"] == [3, 4]
        again = await resync(tabs)  # at the same moment
        assert again[0] == again[1] == again[2]
        assert again[0]["seq"] == 4
        assert [e["involvedObject"]["name"] for e in again[0]["data"]["events"]] == [
            "web2",
            "web1",
        ]
        assert again[0]["data"]["resources"] == [
            {"kind": "vm", "name": "web1", "data": {"phase": "Stopped"}}
        ]
        assert reads == [("tenant.acme", 2), ("tenant.acme", 4)]
        for ws in tabs:
            await ws.disconnect()

    run(scenario)


def test_a_reconnect_that_subscribes_since_its_seq_gets_what_it_missed_unasked(demo):
    """A tab back after a drop says which seq it holds: when the stream moved on (or went
    back), the state follows ``subscribed`` without being asked; when it did not, only
    live messages follow."""
    cookie = session_cookie(demo.carol)
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")

    async def scenario():
        ws = await connected(cookie)
        assert (await subscribe(ws, tenant="acme"))["seq"] == 1
        await ws.disconnect()  # the tab goes away holding seq 1
        await publish(tenant=demo.acme, kind="vm", name="web2", reason="Failed", message="x")

        back = await connected(cookie)
        assert (await subscribe(back, tenant="acme", since=1))["seq"] == 2
        state = await back.receive_json_from(timeout=5)
        assert (state["type"], state["seq"]) == ("resync", 2)
        assert [e["involvedObject"]["name"] for e in state["data"]["events"]] == ["web2", "web1"]
        await back.disconnect()

        current = await connected(cookie)  # holds the latest: nothing to catch up
        assert (await subscribe(current, tenant="acme", since=2))["seq"] == 2
        await publish(tenant=demo.acme, kind="vm", name="web3", reason="Started", message="up")
        live = await current.receive_json_from(timeout=5)
        assert (live["type"], live["seq"]) == ("event", 3)
        await current.disconnect()

        reset = await connected(cookie)  # holds a seq the stream never reached
        assert (await subscribe(reset, tenant="acme", since=9))["seq"] == 3
        assert (await reset.receive_json_from(timeout=5))["type"] == "resync"
        await reset.disconnect()

    run(scenario)


def listed(frame: dict) -> dict:
    """Each resource's phase in a resync frame (None: listed by name only)."""
    return {r["name"]: r.get("data", {}).get("phase") for r in frame["data"]["resources"]}


def test_a_reconnect_since_its_seq_gets_whole_only_the_states_stored_after_it(demo):
    """A resync "since" the seq a tab holds lists every resource of the tenant, whole
    only those whose state was stored after that seq (the others, unchanged, by name);
    a gone resource is not listed. Without "since", or past the stream's seq, all whole."""
    from monitoring.services import resource_forget

    cookie = session_cookie(demo.carol)
    for name in ("a", "b", "gone"):
        resource_publish(tenant=demo.acme, kind="vm", name=name, data={"phase": "Running"})

    async def scenario():
        ws = await connected(cookie)
        assert (await subscribe(ws, tenant="acme"))["seq"] == 3
        await ws.disconnect()  # the tab goes away holding seq 3
        for name, phase in (("b", "Stopped"), ("c", "Pending")):
            await sync_to_async(resource_publish)(
                tenant=demo.acme, kind="vm", name=name, data={"phase": phase}
            )
        await sync_to_async(resource_forget)(tenant=demo.acme, kind="vm", name="gone")

        back = await connected(cookie)
        assert (await subscribe(back, tenant="acme", since=3))["seq"] == 6
        delta = await back.receive_json_from(timeout=5)
        assert (delta["type"], delta["seq"], delta["since"]) == ("resync", 6, 3)
        assert listed(delta) == {"a": None, "b": "Stopped", "c": "Pending"}
        await back.disconnect()

        for since in (0, 9):  # all of it changed since 0; 9: Redis counting again
            tab = await connected(cookie)
            await subscribe(tab, tenant="acme", since=since)
            whole = await tab.receive_json_from(timeout=5)
            assert whole.get("since") == (0 if since == 0 else None)
            assert listed(whole) == {"a": "Running", "b": "Stopped", "c": "Pending"}
            await tab.disconnect()

        one = await connected(cookie)  # an object's stream: its one state, whole
        await subscribe(one, tenant="acme", kind="vm", name="a")
        await one.send_json_to({"type": "resync", "stream": "object.acme.vm.a"})
        assert listed(await one.receive_json_from(timeout=5)) == {"a": "Running"}
        await one.disconnect()

    run(scenario)


def test_a_resync_asked_since_a_seq_gets_whole_only_the_states_stored_after_it(demo):
    """A tab that finds a gap asks for a resync "since" the last seq it holds all of: the
    unchanged resources by name, the changed ones whole. Asked without, all whole."""
    cookie = session_cookie(demo.carol)
    for name in ("a", "b"):
        resource_publish(tenant=demo.acme, kind="vm", name=name, data={"phase": "Running"})

    async def scenario():
        ws = await connected(cookie)
        assert (await subscribe(ws, tenant="acme"))["seq"] == 2
        await sync_to_async(resource_publish)(
            tenant=demo.acme, kind="vm", name="b", data={"phase": "Stopped"}
        )
        assert (await ws.receive_json_from(timeout=5))["seq"] == 3  # say it never arrived
        await ws.send_json_to({"type": "resync", "stream": "tenant.acme", "since": 2})
        delta = await ws.receive_json_from(timeout=5)
        assert (delta["type"], delta["seq"], delta["since"]) == ("resync", 3, 2)
        assert listed(delta) == {"a": None, "b": "Stopped"}
        await ws.send_json_to({"type": "resync", "stream": "tenant.acme"})
        whole = await ws.receive_json_from(timeout=5)
        assert "since" not in whole and listed(whole) == {"a": "Running", "b": "Stopped"}
        await ws.send_json_to({"type": "resync", "stream": "tenant.acme", "since": "2"})
        refused = await ws.receive_json_from(timeout=5)
        assert (refused["type"], refused["code"]) == ("error", "invalid")
        assert "'since'" in refused["message"]
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "shout"}', "Unknown type"),
        ('{"no": "type"}', "Unknown type"),
        ('{"type": "subscribe", "tenant": 5}', "'tenant' must be"),
        ('{"type": "subscribe", "tenant": "acme", "kind": "vm"}', "both 'kind' and 'name'"),
        ('{"type": "subscribe", "tenant": "acme", "kind": "VM!", "name": "a"}', "'kind'"),
        ('{"type": "subscribe", "tenant": "acme", "kind": "vm", "name": 7}', "'name'"),
        ('{"type": "resync", "stream": ["tenant.acme"]}', "'stream'"),
        ('{"type": "subscribe", "tenant": "acme", "since": "3"}', "'since'"),
        ('{"type": "subscribe", "tenant": "acme", "since": -1}', "'since'"),
        ('{"type": "resync", "stream": "tenant.acme", "since": 1.5}', "'since'"),
        ('{"type": "subscribe", "tenant": "acme", "since": true}', "'since'"),
        ('{"type": "subscribe", "tenant": "acme", "since": 1.5}', "'since'"),
        ('{"type": "subscribe", "tenant": "acme", "pad": "' + "x" * 5000 + '"}', "too large"),
    ],
)
def test_a_malformed_frame_gets_a_clear_error_and_changes_nothing(demo, frame, says):
    cookie = session_cookie(demo.alice)

    async def scenario():
        ws = await connected(cookie)
        await ws.send_to(text_data=frame)
        error = await ws.receive_json_from()
        assert error["type"] == "error"
        assert error["code"] == "invalid"
        assert says in error["message"]
        # Still connected, and subscribed to nothing.
        await publish(tenant=demo.acme, kind="vm", name="a", reason="Started", message="up")
        assert await ws.receive_nothing(timeout=0.3)
        assert (await subscribe(ws, tenant="acme"))["type"] == "subscribed"
        await ws.disconnect()

    run(scenario)


def test_a_binary_frame_gets_an_error(demo):
    cookie = session_cookie(demo.alice)

    async def scenario():
        ws = await connected(cookie)
        await ws.send_to(bytes_data=b"\x00\x01")
        error = await ws.receive_json_from()
        assert (error["code"], "binary" in error["message"]) == ("invalid", True)
        await ws.disconnect()

    run(scenario)


def test_signing_out_closes_the_sockets_of_that_session_only(demo):
    browser = Client()
    browser.force_login(demo.alice)
    cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value
    other_cookie = session_cookie(demo.alice)

    async def scenario():
        ws = await connected(cookie)
        other = await connected(other_cookie)
        await sync_to_async(browser.post)("/logout/")
        closing = await ws.receive_output(timeout=2)
        assert closing == {"type": "websocket.close", "code": 4401}
        assert (await subscribe(other, tenant="acme"))["type"] == "subscribed"
        await other.disconnect()

    run(scenario)


def test_each_reader_gets_stored_messages_in_their_own_language(demo):
    """One event, two readers: alice chose Chinese (stored preference), bob's browser asks
    for Chinese (Accept-Language) and carol's for English. Both Chinese readers get the
    message in Chinese, with the phase word translated; carol gets it as stored, and so
    does the resync of what happened before."""
    from django.utils import translation

    from compute.texts import common
    from tenants.models import UserPreference

    UserPreference.objects.update_or_create(user=demo.alice, defaults={"language": "zh-hans"})
    message = common.PHASE_IS_NOW % {"phase": "Running"}
    with translation.override("zh-hans"):
        chinese = translation.gettext(common.PHASE_IS_NOW) % {
            "phase": translation.gettext("Running")
        }
    assert chinese != message

    def browser(user, language: str) -> WebsocketCommunicator:
        headers = [
            (b"origin", ORIGIN.encode()),
            (b"host", b"testserver"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_cookie(user)}".encode()),
            (b"accept-language", language.encode()),
        ]
        return WebsocketCommunicator(application, "/ws/", headers=headers)

    async def scenario():
        readers = {}
        for name, user, language in (
            ("alice", demo.alice, "en-US,en;q=0.9"),
            ("bob", demo.bob, "zh-CN,zh;q=0.9"),
            ("carol", demo.carol, "en-GB,en;q=0.8"),
        ):
            ws = browser(user, language)
            ok, _ = await ws.connect()
            assert ok
            assert (await subscribe(ws, tenant="acme"))["type"] == "subscribed"
            readers[name] = ws
        await publish(tenant=demo.acme, kind="vm", name="web", reason="Running", message=message)
        got = {
            name: (await ws.receive_json_from(timeout=5))["data"]["message"]
            for name, ws in readers.items()
        }
        assert got == {"alice": chinese, "bob": chinese, "carol": message}
        for name, ws in readers.items():
            await ws.send_json_to({"type": "resync", "stream": "tenant.acme"})
            frame = await ws.receive_json_from(timeout=5)
            assert frame["type"] == "resync"
            shown = [
                e["message"]
                for e in frame["data"]["events"]
                if e["involvedObject"]["name"] == "web"
            ]
            assert shown == [got[name]], name
            await ws.disconnect()

    run(scenario)
