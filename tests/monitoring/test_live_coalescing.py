"""Coalesced live frames (``/ws/?batch=1``): the portal served by uvicorn on loopback,
real Redis channel layer, real websocket clients; bursts published through
``monitoring.live`` as the services do."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.test import Client

from monitoring import live
from monitoring.choices import LiveMessageType
from monitoring.groups import metrics_group, object_group, tenant_group
from tests.conftest import live_server

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

BURST = 500
LIVE = {"event", "resource", "metrics", "notification"}


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class Tab:
    """One browser tab's socket: records every frame and the messages in them."""

    def __init__(self, url: str, cookie: str, batch: bool = True, slow: bool = False):
        self.url = url.replace("http://", "ws://") + ("/ws/?batch=1" if batch else "/ws/")
        self.origin = url
        self.cookie = cookie
        self.slow = slow
        self.frames: list[list[dict]] = []  # each frame's messages, as received
        self.sizes: list[int] = []  # each frame's length in characters
        self.messages: list[dict] = []
        self.ws = None

    async def open(self, *targets: dict) -> dict[str, int]:
        from websockets.asyncio.client import connect

        sock = None
        if self.slow:
            # A tab that stops reading: a tiny receive buffer, and the client library
            # stops reading the socket once one frame waits in its queue.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", int(self.origin.rsplit(":", 1)[1])))
        self.ws = await connect(
            self.url,
            sock=sock,
            origin=self.origin,
            additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={self.cookie}"},
            max_queue=1 if self.slow else None,
        )
        seqs = {}
        for target in targets:
            await self.ws.send(json.dumps({"type": "subscribe", **target}))
            frame = json.loads(await self.ws.recv())
            assert frame["type"] == "subscribed", frame
            seqs[frame["stream"]] = frame["seq"]
        return seqs

    async def read_until(self, done, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            raw = await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic())
            self.sizes.append(len(raw))
            frame = json.loads(raw)
            carried = frame["messages"] if frame["type"] == "batch" else [frame]
            self.frames.append(carried)
            self.messages.extend(carried)

    def frames_of(self, stream: str) -> int:
        """How many frames carried live messages of ``stream`` (a frame about another
        stream, say a notification from work still finishing elsewhere, is not counted)."""
        return sum(
            any(m.get("stream") == stream and m["type"] in LIVE for m in frame)
            for frame in self.frames
        )

    def of(self, stream: str) -> list[dict]:
        """The live messages received on ``stream`` (a ``resync`` answer, sent when a
        publish raced the subscribe, is left out)."""
        return [m for m in self.messages if m.get("stream") == stream and m["type"] in LIVE]


def contiguous(messages: list[dict], after: int) -> bool:
    """Each message follows the one before it (a coalesced one covers first_seq..seq)."""
    for message in messages:
        if message.get("first_seq", message["seq"]) != after + 1:
            return False
        after = message["seq"]
    return True


async def publish(messages) -> None:
    await asyncio.to_thread(live.broadcast_many, messages)


def run(scenario, url: str) -> None:
    """``asyncio.run`` in a thread of its own (Playwright's sync API, in browser tests
    earlier in the session, leaves an event loop in the main thread)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, scenario(url)).result()


def phases_and_events(n: int) -> list:
    """``n`` messages on acme's stream: events, and the VM web1 going through phases,
    ending Running."""
    groups = [tenant_group("acme"), object_group("acme", "vm", "web1")]
    messages = []
    for i in range(n):
        if i % 2:
            data = {"tenant": "acme", "kind": "vm", "name": "web1", "state": {"phase": f"p{i}"}}
            messages.append((groups, LiveMessageType.RESOURCE, data))
        else:
            data = {"kind": "vm", "name": "web1", "reason": "Bench", "message": f"event {i}"}
            messages.append((groups, LiveMessageType.EVENT, data))
    final = {"tenant": "acme", "kind": "vm", "name": "web1", "state": {"phase": "Running"}}
    messages[-1] = (groups, LiveMessageType.RESOURCE, final)
    return messages


def test_a_burst_of_500_reaches_a_batching_tab_in_few_frames_in_order(demo):
    cookie = session_cookie(demo.carol)
    stream = tenant_group("acme")

    async def scenario(url):
        batched, plain = Tab(url, cookie), Tab(url, cookie, batch=False)
        before = (await batched.open({"tenant": "acme"}))[stream]
        assert (await plain.open({"tenant": "acme"}))[stream] == before
        await publish(phases_and_events(BURST))

        def got_all(tab):
            return len(tab.of(stream)) >= BURST

        await asyncio.gather(batched.read_until(got_all), plain.read_until(got_all))
        for tab in (batched, plain):
            received = tab.of(stream)
            assert len(received) == BURST  # nothing collapsed: events and phases
            assert [m["seq"] for m in received] == list(range(before + 1, before + BURST + 1))
            assert received[-1]["type"] == "resource"
            assert received[-1]["data"]["state"]["phase"] == "Running"
            events = [m["data"]["message"] for m in received if m["type"] == "event"]
            assert events == [f"event {i}" for i in range(0, BURST - 1, 2)]
        # A tab that did not ask gets one frame per message; a batching tab few.
        assert plain.frames_of(stream) == BURST
        assert batched.frames_of(stream) <= BURST // 10, batched.frames_of(stream)
        await batched.ws.close()
        await plain.ws.close()

    with live_server() as url:
        run(scenario, url)


def test_metric_samples_of_one_series_collapse_to_the_newest_without_a_seq_gap(demo):
    cookie = session_cookie(demo.carol)
    tenant, points = tenant_group("acme"), metrics_group("acme", "web1")

    async def scenario(url):
        tab = Tab(url, cookie)
        vm = {"tenant": "acme", "kind": "vm-metrics", "name": "web1"}
        seqs = await tab.open({"tenant": "acme"}, vm)
        messages = []
        for i in range(200):
            point = {"tenant": "acme", "kind": "vm", "name": "web1", "point": {"t": i, "cpu": i}}
            messages.append(([points], LiveMessageType.METRICS, point))
            totals = {"tenant": "acme", "totals": {"cpu": i}}
            messages.append(([tenant], LiveMessageType.METRICS, totals))
            if i % 20 == 0:
                event = {"kind": "vm", "name": "web1", "reason": "Tick", "message": f"at {i}"}
                messages.append(([tenant], LiveMessageType.EVENT, event))
        await publish(messages)

        def done(tab):
            last = tab.of(points)
            return bool(last) and last[-1]["seq"] == seqs[points] + 200

        def tenant_done(tab):
            last = tab.of(tenant)
            return bool(last) and last[-1]["seq"] == seqs[tenant] + 210

        await tab.read_until(done)
        await tab.read_until(tenant_done)
        got_points, got_tenant = tab.of(points), tab.of(tenant)
        assert contiguous(got_points, seqs[points])
        assert contiguous(got_tenant, seqs[tenant])
        assert got_points[-1]["data"]["point"]["t"] == 199  # the newest sample survives
        assert len(got_points) < 200  # older ones were folded into it
        assert any("first_seq" in m for m in got_points)
        # Events never collapse; the newest totals are the last totals seen.
        events = [m["data"]["message"] for m in got_tenant if m["type"] == "event"]
        assert events == [f"at {i}" for i in range(0, 200, 20)]
        totals = [m for m in got_tenant if m["type"] == "metrics"]
        assert totals[-1]["data"]["totals"]["cpu"] == 199
        await tab.ws.close()

    with live_server() as url:
        run(scenario, url)


def test_a_tab_that_stops_reading_does_not_hold_up_the_others(demo):
    cookie = session_cookie(demo.carol)
    stream = tenant_group("acme")
    filler = "x" * 900

    def burst(n: int) -> list:
        groups = [stream]
        return [
            (groups, LiveMessageType.EVENT, {"reason": "Bulk", "message": f"{i} {filler}"})
            for i in range(n)
        ]

    async def scenario(url):
        slow, fast = Tab(url, cookie, slow=True), Tab(url, cookie)
        before = (await slow.open({"tenant": "acme"}))[stream]
        await fast.open({"tenant": "acme"})
        for _ in range(4):
            await publish(burst(BURST))
        started = time.monotonic()
        await fast.read_until(lambda t: len(t.of(stream)) >= 4 * BURST, timeout=30)
        fast_seconds = time.monotonic() - started
        received = fast.of(stream)
        assert [m["seq"] for m in received] == list(range(before + 1, before + 4 * BURST + 1))
        assert fast_seconds < 15
        # 2,000 messages of ~1 KB in a few ticks: frames of at most 256 KiB of them.
        assert len(fast.sizes) >= 8
        assert max(fast.sizes) < 256 * 1024 + 2048
        # The slow tab reads at last: everything is there, in order.
        await slow.read_until(lambda t: len(t.of(stream)) >= 4 * BURST, timeout=60)
        assert [m["seq"] for m in slow.of(stream)] == [m["seq"] for m in received]
        await slow.ws.close()
        await fast.ws.close()

    with live_server() as url:
        run(scenario, url)
