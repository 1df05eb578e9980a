"""The one websocket endpoint, ``/ws/``: live events and resource states.

Protocol (JSON text frames, at most 4 KiB from the client):

client → server
  ``{"type": "subscribe", "tenant": "acme"}``                      the tenant stream
  ``{"type": "subscribe", "tenant": "acme", "kind": "vm", "name": "web1"}``  one object
  ``{"type": "subscribe", "notifications": true}``  your own notifications (``notify.<id>``)
  any subscribe may add ``"since": n``, the seq of the stream as of which the client
  holds all of it (a reconnect; a page's first subscribe, the seq it was rendered at):
  when the stream is no longer at n, the ``subscribed`` frame is followed by a
  ``resync`` unasked (one access check and one round trip fewer than asking for it);
  for a tenant's stream it says ``"since": n`` and holds whole only the resources whose
  state was stored after n (the others by kind and name only)
  ``{"type": "unsubscribe", "stream": "tenant.acme"}`` (or the same fields as subscribe)
  ``{"type": "resync", "stream": "tenant.acme"}``  current state, to recover from a gap;
  with ``"since": n`` (the seq as of which the client holds all of the stream, the last
  one before the gap) a tenant's stream's resync is a delta as after a subscribe "since"

server → client
  ``{"type": "subscribed", "stream": s, "seq": n}``   n = last seq sent on s before you
  joined: later messages have seq > n (a jump means you missed some: resync)
  ``{"type": "unsubscribed", "stream": s, "reason": "client"|"access"}``
  ``{"type": "event", "stream": s, "seq": n, "data": <event>}``  (monitoring.formats)
  ``{"type": "resource", "stream": s, "seq": n, "data": {"tenant", "kind", "name",
  "state"}}``
  ``{"type": "resync", "stream": s, "seq": n[, "since": m], "data": {"events": [...],
  "resources": [{"kind", "name"[, "data"]}]}}``  state as of seq n: apply, then drop
  messages ≤ n (with ``since``: a resource without ``data`` is unchanged since m)
  (for ``notify.<id>``: ``data: {"notifications": [...], "unread": n}``); also sent
  unasked when the server finds it lost messages of the stream on their way to it
  (``monitoring.fanout``: within two ``ISOTOPE_LIVE_CHECK_SECONDS``, default 5 s)
  ``{"type": "notification", "stream": "notify.<id>", "seq": n, "data": {"notification":
  {...} | null, "unread": n}}``  a new notification, or only a new unread count
  ``{"type": "error", "code": c, "message": m, "request": <client's type>}``; codes
  ``invalid`` (malformed frame), ``not_found`` (unknown tenant, or one you may not
  watch: the same answer), ``not_subscribed``, ``limit``.

Coalescing (opt in: open the socket as ``/ws/?batch=1``; ``static/js/live.js`` does): a
message that arrives after a quiet tick (``ISOTOPE_WS_BATCH_MS``, default 50 ms) goes
out at once; those that arrive faster wait for the end of the tick and go out as one
frame, ``{"type": "batch", "messages": [<message>, ...]}``, in the order they arrived
(a tick with one message sends it bare; one with more than 256 KiB of messages sends
them as several frames, in order). Events, resource states and notifications are
never dropped. A ``metrics`` message may replace an older one of the same series (the
same VM's points, or a tenant's totals) still waiting in the tick when it is the next
seq of the same stream: it then carries ``"first_seq": n``, the seq of the oldest
message it replaced, so it stands for seqs ``first_seq``..``seq`` and a client sees no
gap. Every other frame (``subscribed``, ``resync``, ``error``, ...) goes out after the
messages queued before it. A socket opened without ``batch=1`` gets one frame per
message, as before.

Stored messages (an event's message, a state's message and reason, a notification's)
are sent in the reader's language: their stored choice, else the language cookie, else
the socket's Accept-Language (``portal.texts``); the API and webhooks carry them in
English.

Anonymous sockets are accepted and closed at once with code 4401 so the browser can
tell "signed out" from a network error. Access is checked on every subscribe and
resync and re-checked when ``portal.signals.membership_changed`` fires for the user;
subscriptions no longer allowed are dropped with an ``unsubscribed`` message. A socket
closes with 4401 when its session signs out or its user is deactivated or deleted.

Live messages come from the process's hub (``monitoring.fanout``), which receives each
stream's messages once per process and encodes them once; this consumer joins the hub's
streams after the access check, queues what the hub hands it (``deliver``) and sends
it from a task of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from types import SimpleNamespace
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import translation

from monitoring import fanout, live, selectors
from monitoring.formats import event_data
from monitoring.groups import notify_group, object_group, tenant_group, user_group
from monitoring.services import KIND, NAME_MAX
from portal import texts
from portal.websockets import reader_language
from tenants import selectors as tenant_selectors

logger = logging.getLogger(__name__)

MAX_FRAME = 4096
# A batch frame's messages, at most (characters of their JSON).
BATCH_FRAME_BYTES = 256 * 1024
MAX_SUBSCRIPTIONS = 50
SLUG = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
CLOSE_UNAUTHENTICATED = 4401
NOT_FOUND = "No such tenant or object, or you may not watch it."
BATCH = "batch"


def _series(body: dict) -> tuple | None:
    """What a ``metrics`` message is a sample of (None: anything else, never folded)."""
    if body.get("type") != "metrics":
        return None
    data = body.get("data") or {}
    if "totals" in data:
        return ("totals", data.get("tenant"))
    return ("point", data.get("tenant"), data.get("kind"), data.get("name"))


class SharedSnapshots:
    """Resync frames read and encoded once per process for each stream, language and seq.

    When a web process dies, its tabs reconnect to the others at once and each resyncs
    what it watched. Read and encoded for each socket, a tenant's frame (its last 50
    events and the state of each of its resources) cost the process 21–25 ms of CPU per
    tab for a tenant of 1,000 VMs, against 7–9 ms with none; shared, 6–7.5 ms
    (bench/README.md, ``ws_reconnect``). A tenant's or an object's frame holds nothing of
    its reader but the language, and a stream's state as of a seq is the same whoever
    asks: the first socket to ask reads and encodes it; those that ask at the same seq
    (and "since" the same seq, ``LiveConsumer.send_resync``) while it is being read, or
    within ``TTL`` seconds after, get the same text. A newer seq reads afresh.
    ``TTL`` bounds what could change without a new seq (events the retention task
    deletes; a Redis that lost its seq counters counting again from 0)."""

    TTL = 2.0
    SIZE = 256  # streams × languages kept

    def __init__(self):
        # (stream, language, since) → [seq, when read, loop, future of the text, text or None]
        self.entries: OrderedDict[tuple, list] = OrderedDict()

    def clear(self) -> None:
        self.entries.clear()

    async def text(self, key: tuple, seq: int, make) -> str:
        """The frame for ``key`` at ``seq``: shared, or ``await make()`` (then shared)."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        entry = self.entries.get(key)
        if entry is not None and entry[0] == seq and now - entry[1] < self.TTL:
            if entry[4] is not None:
                return entry[4]
            if entry[2] is loop and not entry[3].done():
                text = await asyncio.shield(entry[3])
                if text is not None:  # else the reader failed: read it here
                    return text
        future = loop.create_future()
        entry = [seq, now, loop, future, None]
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.SIZE:
            self.entries.popitem(last=False)
        try:
            entry[4] = text = await make()
        finally:
            if entry[4] is None and self.entries.get(key) is entry:
                del self.entries[key]
            future.set_result(entry[4])
        return text


SNAPSHOTS = SharedSnapshots()

# A stream's seq in Redis, read off the event loop (no database: any thread).
_seq_current = sync_to_async(live.seq_current, thread_sensitive=False)


class FrameError(Exception):
    """A malformed client frame; ``str`` is the message for the client."""


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Subscriptions to tenant and object streams for one signed-in browser tab."""

    HANDLERS = {"subscribe": "on_subscribe", "unsubscribe": "on_unsubscribe", "resync": "on_resync"}

    async def connect(self):
        user = self.scope.get("user")
        self.subscriptions: dict[str, dict] = {}
        self.user_id = None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.tick = max(0.0, getattr(settings, "ISOTOPE_WS_BATCH_MS", 50) / 1000)
        self.batching = query.get("batch") == ["1"] and self.tick > 0
        # Live messages waiting to go out: [body, its JSON text (None: encode at send)].
        self.outbox: list[list] = []
        self.flush_timer: asyncio.TimerHandle | None = None
        self.flush_task: asyncio.Task | None = None
        self.flushed_at = float("-inf")
        self.sending = asyncio.Lock()
        self.resends: set[asyncio.Task] = set()  # states being resent (``resend``)
        self.hub = fanout.hub(self.channel_layer)
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user.pk
        self.second_factor: bool | None = None  # read with the first tenant stream
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        language = await database_sync_to_async(reader_language)(self.scope)
        # Every English variant reads stored messages as written: one language, "en".
        self.language = "en" if language.split("-")[0] == "en" else language
        await self.channel_layer.group_add(user_group(self.user_id), self.channel_name)

    async def disconnect(self, code):
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        self.outbox = []
        if self.user_id is None:
            return
        for stream in list(self.subscriptions):
            await self.hub.leave(stream, self)
        await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)
        self.subscriptions = {}

    # --- Client frames -------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if self.user_id is None:
            return
        request = None
        try:
            if text_data is None:
                raise FrameError("Send JSON text frames, not binary.")
            if len(text_data.encode()) > MAX_FRAME:
                raise FrameError(f"Frame too large (at most {MAX_FRAME} bytes).")
            try:
                content = json.loads(text_data)
            except ValueError:
                raise FrameError("Frame is not valid JSON.") from None
            if not isinstance(content, dict):
                raise FrameError("Frame must be a JSON object.")
            request = content.get("type")
            if not isinstance(request, str) or request not in self.HANDLERS:
                raise FrameError("Unknown type: use subscribe, unsubscribe or resync.")
            await getattr(self, self.HANDLERS[request])(content)
        except FrameError as error:
            await self.error("invalid", str(error), request)

    async def error(self, code: str, message: str, request=None, **extra) -> None:
        frame = {"type": "error", "code": code, "message": message}
        if isinstance(request, str) and len(request) <= 32:
            frame["request"] = request
        await self.send_json({**frame, **extra})

    def target(self, content: dict) -> dict:
        """Validate ``tenant`` (+ optional ``kind`` and ``name``) of a frame, or
        ``notifications: true`` (the user's own stream)."""
        if content.get("notifications") is True:
            return {"tenant": "", "kind": "", "name": "", "notifications": True}
        tenant, kind, name = content.get("tenant"), content.get("kind"), content.get("name")
        if not isinstance(tenant, str) or not tenant:
            raise FrameError("'tenant' must be a non-empty string.")
        if (kind is None) != (name is None):
            raise FrameError("Give both 'kind' and 'name', or neither.")
        if kind is not None:
            if not isinstance(kind, str) or not KIND.fullmatch(kind):
                raise FrameError("'kind' must be lowercase letters, digits and hyphens.")
            if not isinstance(name, str) or not name or len(name) > NAME_MAX:
                raise FrameError(f"'name' must be a string of 1 to {NAME_MAX} characters.")
        return {"tenant": tenant, "kind": kind or "", "name": name or ""}

    def stream_of(self, target: dict) -> str:
        if target.get("notifications"):
            return notify_group(self.user_id)
        if target["kind"]:
            return object_group(target["tenant"], target["kind"], target["name"])
        return tenant_group(target["tenant"])

    @staticmethod
    def since(content: dict) -> int | None:
        """A frame's ``since``: the seq as of which the client holds all of the stream."""
        since = content.get("since")
        if since is not None and (type(since) is not int or since < 0):
            raise FrameError("'since' must be a seq: a whole number, 0 or more.")
        return since

    async def on_subscribe(self, content: dict) -> None:
        target = self.target(content)
        since = self.since(content)
        stream = self.stream_of(target)
        if stream not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self.error("limit", f"At most {MAX_SUBSCRIPTIONS} subscriptions.", "subscribe")
            return
        if not await self.may_watch(target):
            await self.error("not_found", NOT_FOUND, "subscribe", tenant=target["tenant"])
            return
        # Read seq before joining: whatever is sent later either reaches us or shows up
        # as a gap. If something was sent while we joined, follow with a snapshot. The
        # second read is taken as soon as we are in the group, before ``subscribed`` goes
        # out: what is sent after that reaches us in order and needs no snapshot.
        before = await _seq_current(stream)
        # Holding ``sending``: a message the process hub hands us once we are registered
        # waits in the outbox until the ``subscribed`` frame is out.
        async with self.sending:
            await self.flush()
            await self.hub.join(stream, self)
            self.subscriptions[stream] = target
            missed = await _seq_current(stream) != before
            await super().send_json({"type": "subscribed", "stream": stream, "seq": before})
        if missed or (since is not None and since != before):
            await self.send_resync(stream, target, since=since)

    async def on_unsubscribe(self, content: dict) -> None:
        stream = content.get("stream")
        if stream is None:
            stream = self.stream_of(self.target(content))
        if not isinstance(stream, str):
            raise FrameError("'stream' must be a string.")
        if stream not in self.subscriptions:
            await self.error("not_subscribed", "Not subscribed to that stream.", "unsubscribe")
            return
        await self.drop(stream, "client")

    async def on_resync(self, content: dict) -> None:
        stream = content.get("stream")
        if not isinstance(stream, str):
            raise FrameError("'stream' must be a string.")
        since = self.since(content)
        target = self.subscriptions.get(stream)
        if target is None:
            await self.error("not_subscribed", "Subscribe to the stream first.", "resync")
            return
        if not await self.may_watch(target):
            await self.drop(stream, "access")
            return
        await self.send_resync(stream, target, since=since)

    def resend(self, stream: str) -> None:
        """The process lost messages of ``stream`` (``monitoring.fanout``): send its
        state, as if the client had asked for a resync. Never waits (a task of its own)."""
        target = self.subscriptions.get(stream)
        if target is not None:
            task = asyncio.ensure_future(self._resend(stream, target))
            self.resends.add(task)
            task.add_done_callback(self.resends.discard)

    async def _resend(self, stream: str, target: dict) -> None:
        try:
            await self.send_resync(stream, target)
        except Exception:  # noqa: BLE001 - the socket went away; disconnect cleans up
            logger.debug("live resend failed", exc_info=True)

    async def send_resync(self, stream: str, target: dict, *, since: int | None = None) -> None:
        """The stream's state as of its current seq. Read holding ``sending``, after what
        the outbox held went out: a message queued meanwhile follows the frame (the
        client drops it when the state already has it) instead of going before it and
        being undone by an older state. Not sent once the subscription is gone (an
        access re-check dropped it while the state was read). A tenant's or an object's
        frame is read and encoded once per process for the sockets that ask at the same
        seq in the same language (``SNAPSHOTS``); one's notifications, for each socket.

        ``since``: the seq of a tenant's stream that the tab holds all of (it
        subscribed or asked for the resync "since" it): the states stored after it come
        whole, the others by name only (the frame says ``since``). Not for an object's
        stream (one state), nor past the stream's seq (Redis counting again from 0): the
        whole state."""
        async with self.sending:
            await self.flush()
            seq = await _seq_current(stream)
            if target.get("notifications"):
                text = await self.resync_text(stream, target, seq)
            else:
                if target["kind"] or (since is not None and since > seq):
                    since = None
                text = await SNAPSHOTS.text(
                    (stream, self.language, since),
                    seq,
                    lambda: self.resync_text(stream, target, seq, since),
                )
            if self.subscriptions.get(stream) is not target:
                return
            await super().send(text_data=text)

    async def resync_text(
        self, stream: str, target: dict, seq: int, since: int | None = None
    ) -> str:
        """The resync frame of ``stream`` as of ``seq`` (read after it), in the reader's
        language, encoded."""
        data = await self.snapshot(target, since)
        if self.language != "en":
            with translation.override(self.language):
                data = texts.localize_snapshot(data)
        frame = {"type": "resync", "stream": stream, "seq": seq, "data": data}
        if since is not None:
            frame["since"] = since
        return self.encode(frame)

    async def drop(self, stream: str, reason: str) -> None:
        self.subscriptions.pop(stream, None)
        await self.hub.leave(stream, self)
        await self.send_json({"type": "unsubscribed", "stream": stream, "reason": reason})

    # --- The reader's language ---------------------------------------------------------
    def localized(self, body: dict) -> dict:
        """``body`` with its stored messages in the reader's language (a copy)."""
        if self.language == "en":
            return body
        with translation.override(self.language):
            return texts.localize_live(body)

    # --- Access and state (database, Redis) ------------------------------------------
    async def may_watch(self, target: dict) -> bool:
        """A tenant stream needs membership; one's own notifications need nothing more
        than being signed in (sign-out and deactivation close the socket)."""
        if target.get("notifications"):
            return True
        return await self.allowed(target["tenant"])

    @database_sync_to_async
    def allowed(self, slug: str) -> bool:
        """May the user (reloaded: roles and is_active may have changed) watch ``slug``?
        A session signed in without a second factor may not watch a tenant that
        requires one, as it may not open its pages."""
        if self.second_factor is None:
            from portal.identity.middleware import session_has_second_factor

            signed_in = SimpleNamespace(session=self.scope.get("session"), user=self.scope["user"])
            self.second_factor = signed_in.session is not None and session_has_second_factor(
                signed_in
            )
        return bool(SLUG.fullmatch(slug)) and tenant_selectors.user_may(
            self.user_id, slug, "event.view", second_factor=self.second_factor
        )

    @database_sync_to_async
    def snapshot(self, target: dict, since: int | None = None) -> dict:
        """What a resync carries (the caller read the stream's seq before); ``since``:
        see ``send_resync``."""
        from tenants.models import Tenant

        if target.get("notifications"):
            from monitoring.notifications import notifications_snapshot

            return notifications_snapshot(self.user_id)
        tenant = Tenant.objects.get(slug=target["tenant"])
        events = selectors.events_recent(tenant, kind=target["kind"], name=target["name"])
        return {
            "events": [event_data(e, tenant_slug=tenant.slug) for e in events],
            "resources": live.state_snapshot(
                tenant.slug, target["kind"], target["name"], since=since
            ),
        }

    # --- Frames out ------------------------------------------------------------------
    async def send_json(self, content, close=False):
        """Every frame: after the live messages queued before it, one sender at a time."""
        async with self.sending:
            await self.flush()
            await super().send_json(content)
        if close:
            await self.close()

    async def close(self, code=None, reason=None):
        async with self.sending:
            await self.flush()
            await super().close(code=code, reason=reason)

    def enqueue(self, body: dict, text: str | None) -> None:
        """Queue ``body`` (encoded as ``text``); when batching, a metrics sample
        replaces the one of its series that is the newest queued message of its stream,
        one seq before it."""
        series = _series(body) if self.batching else None
        if series is not None:
            for index in range(len(self.outbox) - 1, -1, -1):
                kept = self.outbox[index][0]
                if kept["stream"] != body["stream"]:
                    continue
                if _series(kept) == series and kept["seq"] + 1 == body["seq"]:
                    body = {**body, "first_seq": kept.get("first_seq", kept["seq"])}
                    text = None  # no longer the text the hub encoded
                    del self.outbox[index]
                break
        self.outbox.append([body, text])

    async def flush(self) -> None:
        """Send the queued live messages (the caller holds ``sending``): batching, what
        the tick collected as one frame; otherwise one frame each."""
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        if not self.outbox:
            return
        messages, self.outbox = self.outbox, []
        texts = [text if text is not None else self.encode(body) for body, text in messages]
        if not self.batching:
            for text in texts:
                await super().send(text_data=text)
            return
        self.flushed_at = asyncio.get_running_loop().time()
        # At most BATCH_FRAME_BYTES of messages per frame (one larger message goes alone):
        # a burst does not become one frame of megabytes a client must take at once.
        frame: list[str] = []
        size = 0
        for text in texts:
            if frame and size + len(text) > BATCH_FRAME_BYTES:
                await self.send_batch(frame)
                frame, size = [], 0
            frame.append(text)
            size += len(text) + 2
        await self.send_batch(frame)

    async def send_batch(self, texts: list[str]) -> None:
        if len(texts) == 1:
            await super().send(text_data=texts[0])
            return
        await super().send(text_data=f'{{"type": "{BATCH}", "messages": [{", ".join(texts)}]}}')

    @staticmethod
    def encode(body: dict) -> str:
        return json.dumps(body)

    async def flush_due(self) -> None:
        """Send what waits (a task of its own, beside the consumer's dispatch and the
        process hub, so a socket that does not read holds up only itself)."""
        try:
            while self.outbox:
                async with self.sending:
                    await self.flush()
                if self.batching:
                    break  # what came in meanwhile waits for its tick (deliver's timer)
        except Exception:  # noqa: BLE001 - the socket went away; disconnect cleans up
            logger.debug("live flush failed", exc_info=True)

    def kick(self) -> None:
        """Start sending what waits, unless a send task is already on it."""
        if self.outbox and (self.flush_task is None or self.flush_task.done()):
            self.flush_task = asyncio.ensure_future(self.flush_due())

    def schedule_flush(self, wait: float) -> None:
        def due() -> None:
            self.flush_timer = None
            self.flush_task = asyncio.ensure_future(self.flush_due())

        self.flush_timer = asyncio.get_running_loop().call_later(wait, due)

    def deliver(self, body: dict, text: str | None = None) -> None:
        """A live message for one of our streams, ``text`` its JSON (encoded once per
        process by the hub). Never waits: the message is queued and sent by a task."""
        if body["stream"] not in self.subscriptions:
            return
        shown = self.localized(body)
        if shown is not body:  # in the reader's language: not the text the hub encoded
            body, text = shown, None
        self.enqueue(body, text)
        if self.batching:
            if self.flush_timer is not None:
                return  # a frame is due at the end of this tick
            wait = self.flushed_at + self.tick - asyncio.get_running_loop().time()
            if wait > 0:
                self.schedule_flush(wait)
                return
        self.kick()  # quiet for a tick (or not batching): no reason to wait

    # --- Channel-layer messages ------------------------------------------------------
    async def live_message(self, message: dict) -> None:
        """A live message sent to this socket's own channel (streams come through the
        process hub, ``monitoring.fanout``)."""
        self.deliver(message["message"])

    async def live_control(self, message: dict) -> None:
        """Access changed (re-check subscriptions) or the session ended (close)."""
        if message.get("action") == "close":
            kept = bool(message.get("keep")) and message["keep"] == self.session_key
            if (message.get("all") and not kept) or (
                message.get("session_key") and message["session_key"] == self.session_key
            ):
                await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        tenant = message.get("tenant") or ""
        for stream, target in list(self.subscriptions.items()):
            if tenant and target["tenant"] != tenant:
                continue
            if not await self.may_watch(target):
                await self.drop(stream, "access")
