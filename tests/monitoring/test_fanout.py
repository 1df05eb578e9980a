"""Per-process fan-out (``monitoring.fanout``): the sockets of one process share one
channel-layer subscription per stream, and each still gets every message of its
streams, in seq order, with its own mode (plain or ``batch=1``) and its own access."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings

from monitoring import live
from monitoring.choices import LiveMessageType
from monitoring.groups import tenant_group
from portal.asgi import application
from portal.failpoints import armed, hits
from tenants import services as tenant_services
from tests.monitoring.test_consumer import ORIGIN, connected, run, session_cookie, subscribe

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

STREAM = tenant_group("acme")


async def batched(cookie: str) -> WebsocketCommunicator:
    headers = [
        (b"origin", ORIGIN.encode()),
        (b"host", b"testserver"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    ws = WebsocketCommunicator(application, "/ws/?batch=1", headers=headers)
    ok, _ = await ws.connect()
    assert ok
    return ws


async def messages(ws, count: int) -> list[dict]:
    """The next ``count`` live messages, batch frames unpacked."""
    got: list[dict] = []
    while len(got) < count:
        frame = await ws.receive_json_from(timeout=10)
        got.extend(frame["messages"] if frame["type"] == "batch" else [frame])
    return got


def channels_in_group(stream: str) -> int:
    """How many channels of this process (this event loop) the layer has in ``stream``."""
    layer = get_channel_layer()
    return len(layer.groups.get(layer._get_group_channel_name(stream), ()))


def burst(count: int, text: str) -> None:
    live.broadcast_many(
        [([STREAM], LiveMessageType.EVENT, {"message": f"{text} {n}"}) for n in range(count)]
    )


def test_tabs_in_one_process_share_one_subscription_and_each_gets_every_message(demo):
    cookie = session_cookie(demo.carol)

    async def scenario():
        tabs = [await connected(cookie), await connected(cookie), await batched(cookie)]
        for tab in tabs:
            assert await subscribe(tab, tenant="acme") == {
                "type": "subscribed",
                "stream": STREAM,
                "seq": 0,
            }
        assert channels_in_group(STREAM) == 1

        await sync_to_async(burst)(30, "burst")
        for tab in tabs:
            got = await messages(tab, 30)
            assert [m["seq"] for m in got] == list(range(1, 31))
            assert [m["data"]["message"] for m in got] == [f"burst {n}" for n in range(30)]
            assert await tab.receive_nothing(timeout=0.2)

        # One tab leaves the stream, one closes: the last one still gets what follows.
        await tabs[0].send_json_to({"type": "unsubscribe", "stream": STREAM})
        assert (await tabs[0].receive_json_from())["type"] == "unsubscribed"
        await tabs[1].disconnect()
        assert channels_in_group(STREAM) == 1
        await sync_to_async(burst)(1, "after")
        assert [m["seq"] for m in await messages(tabs[2], 1)] == [31]
        assert await tabs[0].receive_nothing(timeout=0.3)

        # The last subscriber gone, the process leaves the group; a new one joins again.
        await tabs[2].disconnect()
        assert channels_in_group(STREAM) == 0
        assert await subscribe(tabs[0], tenant="acme") == {
            "type": "subscribed",
            "stream": STREAM,
            "seq": 31,
        }
        assert channels_in_group(STREAM) == 1
        await sync_to_async(burst)(1, "again")
        assert [m["seq"] for m in await messages(tabs[0], 1)] == [32]
        await tabs[0].disconnect()

    run(scenario)


def test_a_tab_whose_access_ends_stops_getting_messages_while_the_others_go_on(demo):
    carol, bob = session_cookie(demo.carol), session_cookie(demo.bob)

    async def scenario():
        kept, removed = await connected(carol), await connected(bob)
        for tab in (kept, removed):
            assert (await subscribe(tab, tenant="acme"))["type"] == "subscribed"
        await sync_to_async(tenant_services.membership_remove)(
            actor=demo.alice, tenant=demo.acme, user=demo.bob
        )
        assert await removed.receive_json_from(timeout=10) == {
            "type": "unsubscribed",
            "stream": STREAM,
            "reason": "access",
        }
        await sync_to_async(burst)(3, "private")
        assert [m["seq"] for m in await messages(kept, 3)] == [1, 2, 3]
        assert await removed.receive_nothing(timeout=0.3)
        await kept.disconnect()
        await removed.disconnect()

    run(scenario)


@pytest.mark.parametrize("shards", [1, 2])
def test_a_burst_arrives_in_seq_order_pipelined_on_one_server_and_through_the_layer_on_two(
    demo, shards
):
    """On one Redis server a burst is published in one pipeline (``live._pubsub_client``);
    a layer sharded over two servers (here: the same server twice) takes each message
    through its own ``group_send``. Either way every tab gets all of it, in order."""
    layer_settings = settings.CHANNEL_LAYERS["default"]
    config = layer_settings["CONFIG"]
    sharded = {
        "default": {
            **layer_settings,
            "CONFIG": {**config, "hosts": config["hosts"] * shards},
        }
    }
    cookie = session_cookie(demo.carol)

    async def scenario():
        assert (live._pubsub_client(get_channel_layer()) is not None) == (shards == 1)
        tabs = [await connected(cookie), await batched(cookie)]
        for tab in tabs:
            assert (await subscribe(tab, tenant="acme"))["type"] == "subscribed"
        await sync_to_async(burst)(40, "burst")
        for tab in tabs:
            got = await messages(tab, 40)
            assert [m["seq"] for m in got] == list(range(1, 41))
            assert [m["data"]["message"] for m in got] == [f"burst {n}" for n in range(40)]
            await tab.disconnect()

    with override_settings(CHANNEL_LAYERS=sharded):
        run(scenario)


async def dropped(count: int) -> None:
    """Wait until the process's hub has dropped ``count`` messages (its failpoint)."""
    for _ in range(200):
        if hits("live.fanout.received") >= count:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the hub did not drop {count} message(s)")


def test_messages_lost_on_their_way_are_made_good_by_a_resync_sent_unasked(demo, settings):
    """Redis pub/sub delivers at most once. A VM's last state lost on its way to a web
    process left its browsers showing the state before, with nothing later to reveal the
    gap: the process's next check finds the stream's seq in Redis past what arrived and
    sends each tab of the stream its state."""
    settings.ISOTOPE_LIVE_CHECK_SECONDS = 0.5
    cookie = session_cookie(demo.carol)
    state = {"phase": "Running", "message": "", "actions": ["stop"]}
    stopped = {"phase": "Stopped", "message": "", "actions": ["start"]}

    def numbered_never_sent(data: dict) -> None:
        """A message that took its seq and was kept in the snapshot, then went nowhere
        (a subscription reconnecting drops it without an error anywhere)."""
        keys = [
            live.SEQ_KEY.format(group=STREAM),
            live.STATE_KEY.format(slug="acme"),
            live.STATE_SEQ_KEY.format(slug="acme"),
        ]
        live.redis_script(live._SEQUENCE)(
            keys=keys, args=[1, *live._state_arguments("vm", "web1", data), 1]
        )

    async def scenario():
        tabs = [await connected(cookie), await batched(cookie)]
        for tab in tabs:
            assert (await subscribe(tab, tenant="acme"))["seq"] == 0
        # Nothing lost, nothing resent: three checks pass while messages come and go.
        await sync_to_async(burst)(5, "kept")
        for tab in tabs:
            assert [m["seq"] for m in await messages(tab, 5)] == [1, 2, 3, 4, 5]
            assert await tab.receive_nothing(timeout=1.5)

        with armed("live.fanout.received", "raise"):
            await sync_to_async(live.broadcast_many)(
                [([STREAM], LiveMessageType.RESOURCE, {"kind": "vm", "name": "web1"})],
                states=[("acme", "vm", "web1", state)],
            )
            await dropped(1)
        for tab in tabs:
            frame = await tab.receive_json_from(timeout=5)
            assert (frame["type"], frame["stream"], frame["seq"]) == ("resync", STREAM, 6)
            assert frame["data"]["resources"] == [{"kind": "vm", "name": "web1", "data": state}]

        # Once: the next messages arrive as before, and no second resync follows.
        await sync_to_async(burst)(2, "after")
        for tab in tabs:
            assert [m["seq"] for m in await messages(tab, 2)] == [7, 8]
            assert await tab.receive_nothing(timeout=1.5)

        # Lost without a trace in this process: found all the same.
        await sync_to_async(numbered_never_sent)(stopped)
        for tab in tabs:
            frame = await tab.receive_json_from(timeout=5)
            assert (frame["type"], frame["seq"]) == ("resync", 9)
            assert frame["data"]["resources"] == [{"kind": "vm", "name": "web1", "data": stopped}]
            await tab.disconnect()

    run(scenario)
