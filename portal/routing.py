"""Websocket routes. Consumers live in their apps; this list only wires them."""

from __future__ import annotations

from django.urls import path

from compute.consumers import ConsoleConsumer
from monitoring.consumers import LiveConsumer

websocket_urlpatterns: list = [
    path("ws/", LiveConsumer.as_asgi(), name="ws-live"),
    path("ws/console/", ConsoleConsumer.as_asgi(), name="ws-console"),
]
