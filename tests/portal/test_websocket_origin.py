"""Every websocket route refuses handshakes from pages that are not the portal itself.

Against the real ASGI application served by uvicorn (``live_url``), with the settings
``make run`` uses (``ISOTOPE_DEBUG=1``: ``ALLOWED_HOSTS = *``), a signed-in user's
session cookie on every attempt: what a page on another port or host of the same
machine would get from the browser.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from portal.routing import websocket_urlpatterns

pytestmark = pytest.mark.unit

ROUTES = ["/" + str(pattern.pattern) for pattern in websocket_urlpatterns]


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def handshake(live_url: str, path: str, origin: str | None, cookie: str):
    """Open ``path`` as a browser on ``origin`` would (None: no Origin header)."""
    url = live_url.replace("http://", "ws://") + path
    return connect(
        url,
        origin=origin,
        additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"},
        subprotocols=["binary"] if "console" in path else None,
        open_timeout=10,
    )


def foreign_origins(live_url: str) -> dict[str, str | None]:
    port = urlsplit(live_url).port
    return {
        "other port": f"http://127.0.0.1:{port + 1}",
        "other host, same port": f"http://localhost:{port}",
        "other host": "http://evil.example",
        "other scheme": f"ftp://127.0.0.1:{port}",
        "opaque": "null",
        "missing": None,
    }


def test_the_routes_under_test_are_every_websocket_route():
    assert ROUTES == ["/ws/", "/ws/console/"]


@pytest.mark.parametrize("path", ROUTES)
def test_a_foreign_origin_is_refused_on_every_websocket_route(demo, live_url, path):
    cookie = session_cookie(demo.alice)
    for why, origin in foreign_origins(live_url).items():
        with pytest.raises(InvalidStatus) as refused:
            handshake(live_url, path, origin, cookie).close()
        assert refused.value.response.status_code == 403, why


def test_the_portals_own_origin_reads_the_live_stream(demo, live_url):
    cookie = session_cookie(demo.alice)
    with handshake(live_url, "/ws/", live_url, cookie) as ws:
        ws.send(json.dumps({"type": "subscribe", "tenant": "acme"}))
        frame = json.loads(ws.recv(timeout=10))
    assert frame["type"] == "subscribed" and frame["stream"] == "tenant.acme"


def test_the_portals_own_origin_opens_the_console_socket(demo, live_url):
    cookie = session_cookie(demo.bob)
    with handshake(live_url, "/ws/console/", live_url, cookie) as ws:
        assert ws.subprotocol == "binary"  # accepted; it now waits for a ticket


def test_a_trusted_origin_of_a_proxy_is_accepted(demo, live_url, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.com"]
    cookie = session_cookie(demo.alice)
    with handshake(live_url, "/ws/", "https://portal.example.com", cookie) as ws:
        ws.send(json.dumps({"type": "subscribe", "tenant": "acme"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
