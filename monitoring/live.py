"""Transport to websocket subscribers: sequence numbers, the channel layer, snapshots.

Internal to ``monitoring``: other apps publish through ``monitoring.services``. Every
message sent to a group carries that group's next sequence number (Redis ``INCR`` on
``isotope:live:seq:<group>``), so a client that sees ``seq`` jump knows it missed
something and resyncs. The last published state of each resource is kept in a Redis
hash per tenant so a resync can return it without asking the resource's app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading

import redis
from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

SEQ_KEY = "isotope:live:seq:{group}"
STATE_KEY = "isotope:live:state:{slug}"
# The channel-layer message type the consumer handles (``LiveConsumer.live_message``).
LIVE_MESSAGE = "live.message"
CONTROL_MESSAGE = "live.control"
# Channel-layer sends in flight at once from one publisher (see broadcast_many).
SEND_CONCURRENCY = 16

_client: redis.Redis | None = None
_client_url: str | None = None
_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """A shared, thread-safe Redis client for ``settings.REDIS_URL``."""
    global _client, _client_url
    with _lock:
        if _client is None or _client_url != settings.REDIS_URL:
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
            _client_url = settings.REDIS_URL
        return _client


def seq_current(group: str) -> int:
    """The last sequence number sent to ``group`` (0 before the first message)."""
    value = redis_client().get(SEQ_KEY.format(group=group))
    return int(value or 0)


_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, in a daemon thread, for sends from sync code.

    ``async_to_sync`` would start a fresh loop per call, and channels-redis keeps its
    connection pools per loop: every publish paid for new Redis connections. A
    long-lived loop keeps them warm. A forked child (Celery prefork, gunicorn) has no
    copy of the thread: it starts its own.
    """
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop.is_closed() or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="isotope-live-publisher", daemon=True
            )
            thread.start()
            _loop, _loop_pid = loop, os.getpid()
            _sender.reset()
        return _loop


def _run(coro_factory, timeout: float = 10) -> None:
    """Run ``coro_factory()`` to completion from synchronous code (any thread)."""
    future = asyncio.run_coroutine_threadsafe(coro_factory(), _publisher_loop())
    future.result(timeout=timeout)


class _Sender:
    """Channel-layer sends of this process, in the order their seqs were taken.

    Publishers hand their messages over and return (a web request does not wait for
    Redis pub/sub); one task on the publisher loop sends whatever has piled up since
    its last pass: one stream's messages one after another (a socket sees its seqs in
    order), different streams side by side.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.wake: asyncio.Event | None = None
        self.idle = threading.Event()
        self.idle.set()
        self.task = None

    def reset(self) -> None:
        with self.lock:
            self.pending, self.wake, self.task = [], None, None
            self.idle.set()

    def put(self, sends: list[tuple[str, dict]]) -> None:
        loop = _publisher_loop()
        with self.lock:
            self.pending.extend(sends)
            self.idle.clear()
        loop.call_soon_threadsafe(self._kick, loop)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.wake is None:
            self.wake = asyncio.Event()
            self.task = loop.create_task(self._drain())
        self.wake.set()

    async def _drain(self) -> None:
        layer = get_channel_layer()
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def stream(messages: list[dict]) -> None:
            # Bounded: channels-redis takes a pooled connection per send in flight, and
            # its pool refuses (MaxConnectionsError) past its limit.
            async with gate:
                for message in messages:
                    try:
                        await layer.group_send(message["stream"], message)
                    except Exception:  # noqa: BLE001 - one lost send must not stop the rest
                        logger.exception("could not send to %s", message["stream"])

        while True:
            await self.wake.wait()
            self.wake.clear()
            with self.lock:
                batch, self.pending = self.pending, []
            try:
                by_stream: dict[str, list[dict]] = {}
                for group, message in batch:
                    by_stream.setdefault(group, []).append(message)
                await asyncio.gather(*(stream(messages) for messages in by_stream.values()))
            except Exception:  # noqa: BLE001 - the sender must outlive any one batch
                logger.exception("live sender: a batch of %d sends failed", len(batch))
            with self.lock:
                if not self.pending:
                    self.idle.set()


_sender = _Sender()
# Serialises "take seqs, hand over" among this process' threads, so the sender gets each
# stream's messages in seq order.
_order = threading.Lock()


def _after_fork() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    global _sender, _order, _loop_lock, _loop
    _sender, _order, _loop_lock, _loop = _Sender(), threading.Lock(), threading.Lock(), None


os.register_at_fork(after_in_child=_after_fork)


def flush(timeout: float = 10) -> bool:
    """Wait until every message handed over by this process has been sent (tests,
    commands that exit right after publishing). Returns whether it got there."""
    return _sender.idle.wait(timeout)


def broadcast(groups: list[str], message_type: str, data: dict) -> dict[str, int]:
    """Send ``data`` as a ``message_type`` message to each group; returns the seqs used."""
    return broadcast_many([(groups, message_type, data)])[0]


def broadcast_many(
    messages: list[tuple[list[str], str, dict]], *, states: list[tuple] = ()
) -> list[dict[str, int]]:
    """Send many ``(groups, message_type, data)`` messages: their sequence numbers (and
    the snapshot ``states`` to keep first, ``(slug, kind, name, data)`` with ``data``
    None to forget one) in one Redis round trip, then the channel-layer sends in the
    background. Returns the seqs used, per message, once they are taken; the sends may
    still be under way (:func:`flush` waits for them).

    Each message is encoded to JSON once here; sockets forward the text as it is."""
    if not messages and not states:
        return []
    client = redis_client()
    with _order:
        pipe = client.pipeline(transaction=False)
        for slug, kind, name, data in states:
            if data is None:
                pipe.hdel(STATE_KEY.format(slug=slug), _field(kind, name))
            else:
                _store_newest(pipe, slug, kind, name, data)
        for groups, _, _ in messages:
            for group in groups:
                pipe.incr(SEQ_KEY.format(group=group))
        numbers = iter(pipe.execute()[len(states) :])
        sends = []
        used = []
        for groups, message_type, data in messages:
            seqs = {group: next(numbers) for group in groups}
            used.append(seqs)
            encoded = json.dumps(data, separators=(",", ":"))
            for group, seq in seqs.items():
                # The frame a socket sends, built once: seq and stream differ per group.
                text = (
                    f'{{"type":{json.dumps(message_type)},"stream":{json.dumps(group)},'
                    f'"seq":{seq},"data":{encoded}}}'
                )
                sends.append((group, {"type": LIVE_MESSAGE, "stream": group, "text": text}))
        if sends:
            _sender.put(sends)
    return used


def message_frame(message: dict) -> tuple[str, str]:
    """``(stream, frame text)`` of a ``live.message`` channel-layer message."""
    if "text" in message:
        return message["stream"], message["text"]
    body = message["message"]  # sent by a process that predates pre-encoded frames
    return body["stream"], json.dumps(body)


def message_body(message: dict) -> dict:
    """The frame of a ``live.message`` as a dict (for consumers that look inside)."""
    if "text" in message:
        return json.loads(message["text"])
    return message.get("message") or {}


def control(group: str, payload: dict) -> None:
    """Send a control message (no sequence number) to the sockets in ``group``."""
    layer = get_channel_layer()

    async def send() -> None:
        await layer.group_send(group, {"type": CONTROL_MESSAGE, **payload})

    _run(send)


# --- Resource state snapshots ------------------------------------------------------------
def _field(kind: str, name: str) -> str:
    return f"{kind}/{name}"


# Store a state unless the one kept is of the same object (``uid``) at a higher
# ``resourceVersion``: publishes run after their transactions commit, in threads and
# processes of their own, so an older state can arrive last; the snapshot must still
# show the newest. (Another object under the same name, e.g. one deleted and created
# again, always replaces it.)
_STORE_NEWEST = """
local kept = redis.call('HGET', KEYS[1], ARGV[1])
local version = tonumber(ARGV[3])
if kept and version and ARGV[4] ~= '' then
  local ok, old = pcall(cjson.decode, kept)
  if ok and type(old) == 'table' and old['uid'] == ARGV[4] then
    local old_version = tonumber(old['resourceVersion'])
    if old_version and old_version > version then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _store_newest(client, slug: str, kind: str, name: str, data: dict):
    return client.eval(
        _STORE_NEWEST,
        1,
        STATE_KEY.format(slug=slug),
        _field(kind, name),
        json.dumps(data),
        str(data.get("resourceVersion") or ""),
        str(data.get("uid") or ""),
    )


def state_store(slug: str, kind: str, name: str, data: dict) -> bool:
    """Remember the last published state of one resource; a state of the same object
    (``uid``) older than the one kept (lower ``resourceVersion``) is ignored. Returns
    whether it was stored."""
    return bool(_store_newest(redis_client(), slug, kind, name, data))


def state_forget(slug: str, kind: str, name: str) -> None:
    """Drop a resource that is gone from the snapshot."""
    redis_client().hdel(STATE_KEY.format(slug=slug), _field(kind, name))


def state_snapshot(slug: str, kind: str = "", name: str = "") -> list[dict]:
    """``[{"kind", "name", "data"}]`` for the tenant, or only for one object."""
    key = STATE_KEY.format(slug=slug)
    if kind:
        raw = redis_client().hget(key, _field(kind, name))
        return [{"kind": kind, "name": name, "data": json.loads(raw)}] if raw else []
    items = []
    for field, raw in sorted(redis_client().hgetall(key).items()):
        obj_kind, _, obj_name = field.decode().partition("/")
        items.append({"kind": obj_kind, "name": obj_name, "data": json.loads(raw)})
    return items
