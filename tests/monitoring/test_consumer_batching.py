"""/ws/?batch=1: many messages at once reach a socket as few frames, in order, with
every seq; a socket without it gets one frame per message as before."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import transaction

from monitoring.services import event_publish
from portal.asgi import application
from tests.monitoring.test_consumer import ORIGIN, run, session_cookie, subscribe

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

BURST = 20


def socket(cookie: str, path: str) -> WebsocketCommunicator:
    headers = [
        (b"origin", ORIGIN.encode()),
        (b"host", b"testserver"),
        (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    return WebsocketCommunicator(application, path, headers=headers)


@sync_to_async
def burst(tenant, count: int = BURST) -> None:
    """``count`` events committed together: their sends leave back to back."""
    with transaction.atomic():
        for n in range(count):
            event_publish(tenant=tenant, kind="vm", name=f"vm{n}", reason="Started", message="up")


async def frames_until(ws, count: int) -> list[dict]:
    """Frames until ``count`` live messages have arrived (batches unpacked)."""
    frames, messages = [], 0
    while messages < count:
        frame = await ws.receive_json_from(timeout=10)
        frames.append(frame)
        messages += len(frame["messages"]) if frame["type"] == "batch" else 1
    return frames


def unpacked(frames: list[dict]) -> list[dict]:
    return [m for f in frames for m in (f["messages"] if f["type"] == "batch" else [f])]


def test_a_burst_arrives_in_few_frames_in_order_with_every_seq(demo, settings):
    settings.ISOTOPE_WS_BATCH_MS = 2000  # a long tick: the whole burst falls into it
    cookie = session_cookie(demo.carol)

    async def scenario():
        ws = socket(cookie, "/ws/?batch=1")
        assert (await ws.connect())[0]
        await subscribe(ws, tenant="acme")
        await burst(demo.acme)
        frames = await frames_until(ws, BURST)
        messages = unpacked(frames)
        assert [m["seq"] for m in messages] == list(range(1, BURST + 1))
        assert [m["data"]["involvedObject"]["name"] for m in messages] == [
            f"vm{n}" for n in range(BURST)
        ]
        # The first goes out at once (the socket was quiet), the rest wait for the tick.
        assert len(frames) <= 3, [f["type"] for f in frames]
        assert frames[-1]["type"] == "batch"
        await ws.disconnect()

    run(scenario)


def test_without_batch_every_message_is_its_own_frame(demo, settings):
    settings.ISOTOPE_WS_BATCH_MS = 2000
    cookie = session_cookie(demo.carol)

    async def scenario():
        ws = socket(cookie, "/ws/")
        assert (await ws.connect())[0]
        await subscribe(ws, tenant="acme")
        await burst(demo.acme, 5)
        frames = [await ws.receive_json_from(timeout=10) for _ in range(5)]
        assert [(f["type"], f["seq"]) for f in frames] == [("event", n) for n in range(1, 6)]
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()

    run(scenario)
