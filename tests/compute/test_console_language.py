"""A console session's close reason (the words the console page shows) comes in the
reader's language: a Chinese reader's refused ticket and missing ticket read in Chinese,
an English reader's as before. No guest needed: both close before any VNC connection."""

from __future__ import annotations

import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils import translation

from compute.texts import console as console_texts
from portal.asgi import application
from tests.monitoring.test_consumer import run

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


def browser(user, language: str, ticket: str | None) -> WebsocketCommunicator:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"origin", b"http://testserver"),
        (b"host", b"testserver"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        (b"accept-language", language.encode()),
    ]
    protocols = ["binary"] + ([f"isotope-ticket.{ticket}"] if ticket else [])
    return WebsocketCommunicator(
        application, "/ws/console/", headers=headers, subprotocols=protocols
    )


async def close_frame(ws: WebsocketCommunicator) -> dict:
    ok, _ = await ws.connect(timeout=10)
    assert ok
    while True:
        message = await ws.receive_output(timeout=15)
        if message["type"] == "websocket.close":
            await ws.disconnect()
            return message


def test_close_reasons_read_in_the_readers_language(demo):
    with translation.override("zh-hans"):
        invalid = translation.gettext(console_texts.TICKET_INVALID)
        missing = translation.gettext(console_texts.NO_TICKET)
    assert invalid != console_texts.TICKET_INVALID and missing != console_texts.NO_TICKET
    frames = {}

    async def scenario():
        frames["zh-refused"] = await close_frame(
            browser(demo.bob, "zh-CN,zh;q=0.9", "not-a-ticket")
        )
        frames["en-refused"] = await close_frame(browser(demo.bob, "en-US", "not-a-ticket"))
        frames["zh-missing"] = await close_frame(browser(demo.bob, "zh-CN", None))

    run(scenario)
    assert (frames["zh-refused"]["code"], frames["zh-refused"].get("reason")) == (4401, invalid)
    assert (frames["en-refused"]["code"], frames["en-refused"].get("reason")) == (
        4401,
        console_texts.TICKET_INVALID,
    )
    assert (frames["zh-missing"]["code"], frames["zh-missing"].get("reason")) == (4400, missing)
    assert len(missing.encode()) <= 123
