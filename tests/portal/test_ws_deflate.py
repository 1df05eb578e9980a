"""Websockets decline permessage-deflate unless ``ISOTOPE_WS_DEFLATE`` turns it on.

Browsers offer the extension on every socket. The console relay forwards VNC data its
RFB encodings have already compressed, and zlib on every relayed byte held the relay
to a tenth of its throughput (bench/README.md, ``console_relay.py``), so the portal's
uvicorn (``portal.workers.uvicorn_options``: the web tier's and this test server's)
declines it by default. Against the real application served by uvicorn, a signed-in
user's socket offering deflate as a browser does; live messages arrive either way.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from websockets.sync.client import connect

from monitoring.services import event_publish
from tests.conftest import live_server
from tests.portal.test_websocket_origin import session_cookie

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("setting", "negotiated"), [(None, False), ("0", False), ("1", True), ("on", True)]
)
def test_a_socket_gets_deflate_only_when_the_setting_turns_it_on(
    demo, monkeypatch, setting, negotiated
):
    if setting is None:
        monkeypatch.delenv("ISOTOPE_WS_DEFLATE", raising=False)
    else:
        monkeypatch.setenv("ISOTOPE_WS_DEFLATE", setting)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_cookie(demo.carol)}"
    with live_server() as url:
        with connect(
            url.replace("http://", "ws://") + "/ws/",
            origin=url,
            additional_headers={"Cookie": cookie},
            compression="deflate",
            open_timeout=10,
        ) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in extensions) is negotiated
            ws.send(json.dumps({"type": "subscribe", "tenant": "acme"}))
            subscribed = json.loads(ws.recv(timeout=10))
            assert subscribed["type"] == "subscribed"
            event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
            message = json.loads(ws.recv(timeout=10))
            assert message["seq"] == subscribed["seq"] + 1
            assert message["data"]["reason"] == "Started"
