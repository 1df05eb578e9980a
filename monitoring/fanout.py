"""Per-process fan-out of live messages to the ``/ws/`` sockets of this ASGI process.

Internal to ``monitoring`` (used by ``monitoring.consumers.LiveConsumer``). Without it
every socket joined each stream's channel-layer group with its own channel: a message
was unpacked, dispatched, checked and JSON-encoded once per socket. Here one *hub* per
event loop and channel layer (one per ASGI process in production) holds one channel of
its own and joins each stream's group once, when the first local socket subscribes to
the stream, and leaves it when the last one goes. Each message then arrives in the
process once, is encoded once, and its text is handed to every local socket subscribed
to the stream (``LiveConsumer.deliver``), which sends it on its own, so a slow reader
never holds the others up.

The channel layer does the cross-process part (``group_add``, ``group_discard``,
``receive`` on a channel from ``new_channel``); only the registry of local sockets is
ours. Access checks stay with the socket: it joins a stream only after ``may_watch``
allowed it, and leaves when a re-check drops the subscription. Control messages
(``live.control``: access re-checks, sign-out) still go to each socket's own channel
through the user's group.
"""

from __future__ import annotations

import asyncio
import json
import logging

from monitoring.live import LIVE_MESSAGE

logger = logging.getLogger(__name__)

_hubs: dict[tuple[int, int], Hub] = {}


class Hub:
    """One channel-layer channel and the local sockets of each stream it has joined."""

    def __init__(self, layer, loop: asyncio.AbstractEventLoop):
        self.layer = layer
        self.loop = loop
        self.channel: str | None = None
        self.listener: asyncio.Task | None = None
        self.sockets: dict[str, set] = {}
        # Joins and leaves one at a time: a stream's group is joined before its first
        # socket is registered and left after its last one is gone.
        self.changing = asyncio.Lock()

    async def join(self, stream: str, socket) -> None:
        """Register ``socket`` for ``stream``; when this returns, the process's
        subscription to the stream is in place (joined by this call or an earlier one)."""
        async with self.changing:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
                self.listener = asyncio.ensure_future(self.listen(self.channel))
            members = self.sockets.get(stream)
            if members is None:
                await self.layer.group_add(stream, self.channel)
                members = self.sockets[stream] = set()
            members.add(socket)

    async def leave(self, stream: str, socket) -> None:
        """Unregister ``socket``; the last socket of a stream leaves the group, and the
        last one of all stops the hub's listener (a later join starts a new one)."""
        async with self.changing:
            members = self.sockets.get(stream)
            if members is None or socket not in members:
                return
            members.discard(socket)
            if members:
                return
            del self.sockets[stream]
            await self.layer.group_discard(stream, self.channel)
            if not self.sockets:
                self.stop()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.cancel()  # the layer drops the channel when its receive is cancelled
        self.listener = None
        self.channel = None

    async def listen(self, channel: str) -> None:
        """Receive every message for the joined streams, once for the whole process."""
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis went away: retry, as consumers do
                logger.warning("live fan-out receive failed", exc_info=True)
                await asyncio.sleep(1)
                continue
            if message.get("type") == LIVE_MESSAGE:
                self.fan_out(message["message"])

    def fan_out(self, body: dict) -> None:
        """Encode ``body`` once and hand it to each local socket of its stream."""
        members = self.sockets.get(body.get("stream"))
        if not members:
            return
        text = json.dumps(body)
        for socket in list(members):
            try:
                socket.deliver(body, text)
            except Exception:  # noqa: BLE001 - one broken socket must not starve the rest
                logger.warning("live delivery to one socket failed", exc_info=True)


def _key(layer, loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
    return id(layer), id(loop)


def hub(layer) -> Hub:
    """The hub of ``layer`` in the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    for key, old in list(_hubs.items()):
        if old.loop.is_closed():  # a finished event loop (tests run one per test)
            del _hubs[key]
    found = _hubs.get(_key(layer, loop))
    if found is None or found.layer is not layer or found.loop is not loop:
        found = _hubs[_key(layer, loop)] = Hub(layer, loop)
    return found
