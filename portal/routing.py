"""Websocket routes. Consumers live in their apps; this list only wires them."""

from __future__ import annotations

websocket_urlpatterns: list = []
