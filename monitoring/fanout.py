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

Messages lost on the way (Redis pub/sub delivers at most once: a reconnect of the
process's subscription loses what was published meanwhile) would show in a browser
only as a jump of seq at the stream's next message, and not at all when the lost one
was the last: a VM shown "Starting" for good. So every ``ISOTOPE_LIVE_CHECK_SECONDS``
the hub reads its streams' seqs in Redis (one ``MGET``): a seq that was there at the
previous check and has still not arrived was lost, and each local socket of that
stream is sent the stream's current state (``LiveConsumer.resend``) unasked.
"""

from __future__ import annotations

import asyncio
import json
import logging

from asgiref.sync import sync_to_async
from django.conf import settings

from monitoring import live
from monitoring.live import LIVE_MESSAGE
from portal.failpoints import failpoint

logger = logging.getLogger(__name__)

_hubs: dict[tuple[int, int], Hub] = {}


class Hub:
    """One channel-layer channel and the local sockets of each stream it has joined."""

    def __init__(self, layer, loop: asyncio.AbstractEventLoop):
        self.layer = layer
        self.loop = loop
        self.channel: str | None = None
        self.listener: asyncio.Task | None = None
        self.checker: asyncio.Task | None = None
        self.sockets: dict[str, set] = {}
        # Per joined stream: the highest seq received, and its seq in Redis at the last
        # check (``check``).
        self.received: dict[str, int] = {}
        self.published: dict[str, int] = {}
        # The listener waits after a failed receive: what is published meanwhile waits
        # in the layer, late but not lost, and is not counted so.
        self.resting = False
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
                self.checker = asyncio.ensure_future(self.check_every())
            members = self.sockets.get(stream)
            if members is None:
                await self.layer.group_add(stream, self.channel)
                # Read once in the group: every later seq reaches ``listen``. (What
                # arrives meanwhile reaches no socket yet: each one's subscribe sees the
                # seq move while it joined and follows with a resync.)
                self.received[stream] = (await _seqs([stream]))[0]
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
            self.received.pop(stream, None)
            self.published.pop(stream, None)
            await self.layer.group_discard(stream, self.channel)
            if not self.sockets:
                self.stop()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.cancel()  # the layer drops the channel when its receive is cancelled
        if self.checker is not None:
            self.checker.cancel()
        self.listener = self.checker = None
        self.channel = None

    async def listen(self, channel: str) -> None:
        """Receive every message for the joined streams, once for the whole process."""
        while True:
            try:
                message = await self.layer.receive(channel)
                failpoint("live.fanout.received")  # as if Redis went away with it
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis went away: retry, as consumers do
                logger.warning("live fan-out receive failed", exc_info=True)
                self.resting = True
                await asyncio.sleep(1)
                self.resting = False
                continue
            if message.get("type") == LIVE_MESSAGE:
                self.fan_out(message["message"])

    def fan_out(self, body: dict) -> None:
        """Encode ``body`` once and hand it to each local socket of its stream."""
        stream = body.get("stream")
        members = self.sockets.get(stream)
        if not members:
            return
        seq = body.get("seq")
        if isinstance(seq, int) and seq > self.received.get(stream, 0):
            self.received[stream] = seq
        text = json.dumps(body)
        for socket in list(members):
            try:
                socket.deliver(body, text)
            except Exception:  # noqa: BLE001 - one broken socket must not starve the rest
                logger.warning("live delivery to one socket failed", exc_info=True)

    async def check_every(self) -> None:
        """``check`` every ``ISOTOPE_LIVE_CHECK_SECONDS`` (read each time; 0: not at all)."""
        while True:
            interval = float(getattr(settings, "ISOTOPE_LIVE_CHECK_SECONDS", 5))
            await asyncio.sleep(interval if interval > 0 else 5)
            if interval <= 0:
                continue
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away: the next check looks again
                logger.warning("live fan-out check failed", exc_info=True)

    async def check(self) -> None:
        """Resend the state of each stream whose seq in Redis at the previous check has
        not arrived since: those messages were lost. Not sooner: a message published
        just before a check is still on its way."""
        streams = list(self.sockets)
        if not streams or self.resting:
            return
        for stream, now in zip(streams, await _seqs(streams), strict=True):
            if stream not in self.sockets:
                continue  # left while Redis answered
            before = self.published.get(stream)
            self.published[stream] = now
            if self.received.get(stream, 0) > now:  # Redis lost its counters: from here
                self.received[stream] = now
            if before is None or self.received.get(stream, 0) >= before:
                continue
            logger.warning(
                "live fan-out: %s lost seqs %s..%s; resending its state",
                stream,
                self.received.get(stream, 0) + 1,
                before,
            )
            self.received[stream] = now  # the state resent is as of ``now`` or later
            for socket in list(self.sockets[stream]):
                socket.resend(stream)
            # Join the group again (the same channel: nothing changes if it was in),
            # in case the layer had let the process's membership go.
            if self.channel is not None:
                await self.layer.group_add(stream, self.channel)


async def _seqs(streams: list[str]) -> list[int]:
    return await sync_to_async(live.seqs_current, thread_sensitive=False)(streams)


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
