"""Transport to websocket subscribers: sequence numbers, the channel layer, snapshots.

Internal to ``monitoring``: other apps publish through ``monitoring.services``. Every
message sent to a group carries that group's next sequence number (Redis ``INCR`` on
``isotope:live:seq:<group>``), so a client that sees ``seq`` jump knows it missed
something and resyncs. The last published state of each resource is kept in a Redis
hash per tenant so a resync can return it without asking the resource's app, and
beside it the tenant stream's seq at which each was stored, so that a tab that comes
back holding seq n gets only the states stored after n (the others by name).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import msgpack
import redis
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.serializers import MsgPackSerializer
from channels_redis.utils import decode_hosts
from django.conf import settings

from monitoring.groups import tenant_group

logger = logging.getLogger(__name__)

SEQ_KEY = "isotope:live:seq:{group}"
STATE_KEY = "isotope:live:state:{slug}"
# Field of STATE_KEY → the tenant stream's seq of the script call that stored it last
# (no entry: not known, so always sent).
STATE_SEQ_KEY = "isotope:live:stateseq:{slug}"
# The channel-layer message type the consumer handles (``LiveConsumer.live_message``).
LIVE_MESSAGE = "live.message"
CONTROL_MESSAGE = "live.control"
# Channel-layer sends in flight at once from one publisher (see broadcast_many).
SEND_CONCURRENCY = 16

_clients: dict[tuple, redis.Redis] = {}
_lock = threading.Lock()


def _shared_client(url: str, **options) -> redis.Redis:
    """The process's one thread-safe Redis client for ``url`` with these options."""
    key = (url, *sorted((name, repr(value)) for name, value in options.items()))
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = redis.Redis.from_url(url, **options)
    return client


def redis_client() -> redis.Redis:
    """A shared, thread-safe Redis client for ``settings.REDIS_URL``."""
    return _shared_client(settings.REDIS_URL, socket_timeout=5)


def seq_current(group: str) -> int:
    """The last sequence number sent to ``group`` (0 before the first message)."""
    return seqs_current([group])[0]


def page_baseline(tenant) -> dict[str, int]:
    """What a tenant's page declares as its baseline (``isotope-live-baseline``): the
    tenant stream's seq, so that live.js resyncs what the page missed after it. Read
    before the page reads what it shows: ``portal.web.tenant_view`` reads it for a GET
    and keeps it on the tenant, and this returns that; otherwise (a form shown again
    after a POST) it is read now. A state stored up to this seq is then in the page.
    {} when Redis cannot say (the page still renders, without live updates)."""
    kept = getattr(tenant, "isotope_live_baseline", None)
    if kept is not None:
        return kept
    stream = tenant_group(tenant.slug)
    try:
        return {stream: seq_current(stream)}
    except Exception:  # noqa: BLE001 - the page still renders, without live updates
        logger.warning("no live sequence for %s (Redis down?)", stream, exc_info=True)
        return {}


def seqs_current(groups: list[str]) -> list[int]:
    """``seq_current`` of each group, in one round trip."""
    values = redis_client().mget([SEQ_KEY.format(group=group) for group in groups])
    return [int(value or 0) for value in values]


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, in a daemon thread, for sends from sync code.

    ``async_to_sync`` would start a fresh loop per call, and channels-redis keeps its
    connection pools per loop: every publish paid for new Redis connections. A
    long-lived loop keeps them warm.
    """
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="isotope-live-publisher", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


def _run(coro_factory, timeout: float = 10) -> None:
    """Run ``coro_factory()`` to completion from synchronous code (any thread)."""
    future = asyncio.run_coroutine_threadsafe(coro_factory(), _publisher_loop())
    future.result(timeout=timeout)


def broadcast(groups: list[str], message_type: str, data: dict) -> dict[str, int]:
    """Send ``data`` as a ``message_type`` message to each group; returns the seqs used."""
    return broadcast_many([(groups, message_type, data)])[0]


def broadcast_many(
    messages: list[tuple[list[str], str, dict]], *, states: list[tuple] = ()
) -> list[dict[str, int]]:
    """Send many ``(groups, message_type, data)`` messages (metrics publish one message
    per VM per collection; a transaction's events and states go together): on the
    pub/sub layer with REDIS_URL's server and plain MessagePack (the default), in one
    Redis round trip that numbers and publishes them (``_broadcast_in_script``); else
    one round trip for their sequence numbers and one batch of channel-layer sends.
    ``states``: ``(slug, kind, name, data)`` each, kept in the resync snapshot in the
    first round trip, before the messages go out (see ``_STORE``). Returns the seqs
    used, per message."""
    if not messages:
        return []
    keys = [SEQ_KEY.format(group=group) for groups, _, _ in messages for group in groups]
    arguments: list = [len(keys)]
    # Each state's tenant stream: the last of its seq keys here (the highest number).
    # Only with states: a metrics collection sends a message per VM and no state.
    last = {key: index for index, key in enumerate(keys, start=1)} if states else {}
    for slug, kind, name, data in states:
        keys += [STATE_KEY.format(slug=slug), STATE_SEQ_KEY.format(slug=slug)]
        arguments += _state_arguments(kind, name, data)
        arguments.append(last.get(SEQ_KEY.format(group=tenant_group(slug)), 0))
    layer = get_channel_layer()
    direct = _pubsub_client(layer)
    if direct is not None and _publishable_in_script(layer, direct[0]):
        return _broadcast_in_script(messages, keys, arguments, prefix=direct[1])
    numbers = iter(redis_script(_SEQUENCE)(keys=keys, args=arguments))
    sends = []
    used = []
    for groups, message_type, data in messages:
        seqs = {group: next(numbers) for group in groups}
        used.append(seqs)
        for group, seq in seqs.items():
            body = {"type": message_type, "stream": group, "seq": seq, "data": data}
            sends.append((group, {"type": LIVE_MESSAGE, "message": body}))
    if direct is not None:
        # Every PUBLISH in one pipeline: one round trip, in seq order per group, and no
        # hop to the publisher loop's thread and back.
        client, prefix = direct
        pipeline = client.pipeline(transaction=False)
        for group, message in sends:
            pipeline.publish(f"{prefix}__group__{group}", layer.serialize(message))
        pipeline.execute()
        return used
    # One group's messages go out one after another, in seq order (sends in flight at
    # once take different pooled connections and may reach Redis in any order); groups
    # go in parallel.
    per_group: dict[str, list[dict]] = {}
    for group, message in sends:
        per_group.setdefault(group, []).append(message)

    # Bounded: channels-redis takes a pooled connection per send in flight, and its
    # pool refuses (MaxConnectionsError) past its limit.
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def in_order(group: str, messages: list[dict]) -> None:
        async with gate:
            for message in messages:
                await layer.group_send(group, message)

    async def send() -> None:
        await asyncio.gather(*(in_order(group, queue) for group, queue in per_group.items()))

    _run(send, timeout=max(10, len(sends) / 100))
    return used


def _publishable_in_script(layer, client: redis.Redis) -> bool:
    """Whether the sequence script can publish ``layer``'s messages itself: they are
    plain MessagePack (no encryption, no random prefix), so a message's bytes are those
    of everything but its seq followed by the seq's, and the layer's Redis server is the
    one the sequence numbers are on (channels are server-wide, not per database)."""
    serializer = getattr(layer, "_serializer", None)
    if type(serializer) is not MsgPackSerializer:  # not a subclass that packs otherwise
        return False
    if serializer.crypter is not None or serializer.random_prefix_length:
        return False
    ours = redis_client().connection_pool.connection_kwargs
    theirs = client.connection_pool.connection_kwargs
    # The same server, and the same user: the script publishes as REDIS_URL's.
    where = ("host", "port", "path", "username", "password")
    return all(ours.get(key) == theirs.get(key) for key in where)


def _open_message(message_type: str, group: str, data: dict) -> bytes:
    """The MessagePack bytes of a live message to ``group`` as the layer sends it, up to
    its seq's value: ``{"type": LIVE_MESSAGE, "message": {"type", "stream", "data",
    "seq": `` and the script appends the number (``cmsgpack.pack``). The seq comes last
    in the innermost map, the last value of the outer one."""
    pack = msgpack.Packer().pack
    return b"".join(
        (
            b"\x82",  # a map of 2
            pack("type"),
            pack(LIVE_MESSAGE),
            pack("message"),
            b"\x84",  # a map of 4
            pack("type"),
            pack(message_type),
            pack("stream"),
            pack(group),
            pack("data"),
            pack(data),
            pack("seq"),
        )
    )


def _broadcast_in_script(
    messages: list[tuple[list[str], str, dict]], keys: list[str], arguments: list, *, prefix: str
) -> list[dict[str, int]]:
    """``broadcast_many`` in one round trip: the script numbers each message and
    publishes it in the same step, so each group's messages reach its subscribers in
    the order of their seqs even when several processes publish to it at once."""
    for groups, message_type, data in messages:
        for group in groups:
            arguments += [f"{prefix}__group__{group}", _open_message(message_type, group, data)]
    numbers = iter(redis_script(_SEQUENCE_PUBLISH)(keys=keys, args=arguments))
    return [{group: next(numbers) for group in groups} for groups, _, _ in messages]


def _pubsub_client(layer) -> tuple[redis.Redis, str] | None:
    """``(client, prefix)`` to publish ``layer``'s group messages with, when ``layer``
    is channels-redis's pub/sub layer on one Redis server; otherwise ``None`` (sends go
    through ``group_send``).

    That layer's ``group_send`` is one ``PUBLISH`` of ``layer.serialize(message)`` to
    ``<prefix>__group__<group>`` on the group's shard (the only one here). Done through
    the layer, each costs a trip to the publisher loop's thread and an asyncio Redis
    command; a burst of them (a transaction's event and state to two streams each, or a
    metrics collection's one message per VM) goes out here in one pipelined round trip.
    The tests receive what this sends through the layer itself, so a change of that
    format in channels-redis fails them.
    """
    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    config = settings.CHANNEL_LAYERS.get(DEFAULT_CHANNEL_LAYER, {}).get("CONFIG", {})
    hosts = decode_hosts(config.get("hosts"))
    if len(hosts) != 1 or "address" not in hosts[0]:
        return None
    options = {"socket_timeout": 5, **hosts[0]}
    address = options.pop("address")
    return _shared_client(address, **options), config.get("prefix", "asgi")


def control(group: str, payload: dict) -> None:
    """Send a control message (no sequence number) to the sockets in ``group``."""
    layer = get_channel_layer()

    async def send() -> None:
        await layer.group_send(group, {"type": CONTROL_MESSAGE, **payload})

    _run(send)


# --- Resource state snapshots ------------------------------------------------------------
def _field(kind: str, name: str) -> str:
    return f"{kind}/{name}"


# One round trip for ``broadcast_many``: ARGV[1] = n; KEYS[1..n] (the streams' seq
# keys) + 1 each, returned in order; the keys after them come in pairs, a tenant's state
# hash and its seq hash (STATE_SEQ_KEY), with five ARGV of their own: field, the state's
# JSON, its resourceVersion, its uid, and which of KEYS[1..n] is the tenant stream's
# last (0: none). A state is stored unless the one kept is of the same object (``uid``)
# at a higher ``resourceVersion``: publishes run after their transactions commit, in
# threads and processes of their own, so an older state can arrive last; the snapshot
# must still show the newest. (Another object under the same name, e.g. one deleted and
# created again, always replaces it.) A state stored is tagged with that key's new number
# (``tag``): a tab holding that seq has had the message that carried it.
_STORE = """
local function store(key, field, value, version_text, uid)
  local kept = redis.call('HGET', key, field)
  local version = tonumber(version_text)
  if kept and version and uid ~= '' then
    local ok, old = pcall(cjson.decode, kept)
    if ok and type(old) == 'table' and old['uid'] == uid then
      local old_version = tonumber(old['resourceVersion'])
      if old_version and old_version > version then
        return false
      end
    end
  end
  redis.call('HSET', key, field, value)
  return true
end
local count = tonumber(ARGV[1])
local states = (#KEYS - count) / 2
local stored = {}
for i = 0, states - 1 do
  local at = 2 + i * 5
  local key = KEYS[count + 1 + i * 2]
  if store(key, ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]) then
    stored[#stored + 1] = {KEYS[count + 2 + i * 2], ARGV[at], tonumber(ARGV[at + 4])}
  end
end
local function tag(numbers)
  for _, state in ipairs(stored) do
    if state[3] > 0 then
      redis.call('HSET', state[1], state[2], numbers[state[3]])
    else
      redis.call('HDEL', state[1], state[2])
    end
  end
end
"""
_SEQUENCE = (
    _STORE
    + """
local numbers = {}
for i = 1, count do
  numbers[i] = redis.call('INCR', KEYS[i])
end
tag(numbers)
return numbers
"""
)
# As _SEQUENCE, and each message published as its number is taken: after the states'
# ARGV, two per seq key: the group's channel, the message's bytes up to its seq's value
# (``_open_message``).
_SEQUENCE_PUBLISH = (
    _STORE
    + """
local first = 2 + states * 5
local numbers = {}
for i = 1, count do
  numbers[i] = redis.call('INCR', KEYS[i])
  local at = first + (i - 1) * 2
  redis.call('PUBLISH', ARGV[at], ARGV[at + 1] .. cmsgpack.pack(numbers[i]))
end
tag(numbers)
return numbers
"""
)
# A tenant's states for a tab holding seq ARGV[1]: KEYS = the state hash, its seq hash.
# Every field, each followed by its state when it was stored after that seq or its seq
# is not known, else by nil.
_CHANGED_SINCE = """
local since = tonumber(ARGV[1])
local tags = {}
local pairs_ = redis.call('HGETALL', KEYS[2])
for i = 1, #pairs_, 2 do
  tags[pairs_[i]] = tonumber(pairs_[i + 1])
end
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  out[#out + 1] = field
  local seq = tags[field]
  if seq and seq <= since then
    out[#out + 1] = false
  else
    out[#out + 1] = redis.call('HGET', KEYS[1], field)
  end
end
return out
"""
_registered: dict[str, tuple[redis.Redis, object]] = {}


def redis_script(source: str):
    """Lua ``source`` registered with ``redis_client()`` once per process (``EVALSHA``,
    loaded again if Redis forgot it): one command, no pipeline object to build per call."""
    client = redis_client()
    kept = _registered.get(source)
    if kept is None or kept[0] is not client:
        kept = _registered[source] = (client, client.register_script(source))
    return kept[1]


def _state_arguments(kind: str, name: str, data: dict) -> list:
    return [
        _field(kind, name),
        json.dumps(data),
        str(data.get("resourceVersion") or ""),
        str(data.get("uid") or ""),
    ]


def state_forget(slug: str, kind: str, name: str) -> None:
    """Drop a resource that is gone from the snapshot."""
    field = _field(kind, name)
    pipe = redis_client().pipeline(transaction=False)
    pipe.hdel(STATE_KEY.format(slug=slug), field)
    pipe.hdel(STATE_SEQ_KEY.format(slug=slug), field)
    pipe.execute()


def state_snapshot(
    slug: str, kind: str = "", name: str = "", *, since: int | None = None
) -> list[dict]:
    """``[{"kind", "name", "data"}]`` for the tenant, or only for one object. ``since``
    (a tenant's, by a tab holding the tenant stream's seq ``since``): the states stored
    after it have their ``data``; the others come without it, by name only."""
    key = STATE_KEY.format(slug=slug)
    if kind:
        raw = redis_client().hget(key, _field(kind, name))
        return [{"kind": kind, "name": name, "data": json.loads(raw)}] if raw else []
    if since is None:
        found = redis_client().hgetall(key).items()
    else:
        reply = redis_script(_CHANGED_SINCE)(
            keys=[key, STATE_SEQ_KEY.format(slug=slug)], args=[since]
        )
        found = zip(reply[::2], reply[1::2], strict=True)
    items = []
    for field, raw in sorted(found):
        obj_kind, _, obj_name = field.decode().partition("/")
        item = {"kind": obj_kind, "name": obj_name}
        if raw is not None:
            item["data"] = json.loads(raw)
        items.append(item)
    return items
