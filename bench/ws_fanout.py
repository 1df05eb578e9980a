"""Websocket fan-out benchmark: one tenant stream, many browsers, and a raw baseline.

The real web tier (gunicorn with ``deploy/gunicorn.conf.py``, ``--web-processes``
uvicorn processes, as a subprocess, with production settings: ``DEBUG`` off as
``deploy/`` runs it, since 2026-12-05) serves ``/ws/?batch=1`` (as the pages' live.js
opens it; ``--no-batch`` for ``/ws/``); ``--client-processes`` separate processes open the
``websockets`` clients between them on loopback, each signed in with its own session
(created directly in the database) and an allowed ``Origin``, subscribed to the tenant
``bench``. This process then publishes N events through
``monitoring.services.event_publish`` (database row, Redis sequence number, channel
layer) and measures, for every client and event, publish→receive latency on the
machine's monotonic clock (shared by all processes); lost = expected − received once
every client has every event or ``--settle`` seconds after the last publish, and each
client checks that its sequence numbers have no gaps.

Raw baseline in the same run, with the same client processes and the same number of
sockets: a trivial broadcast server (one process, ``websockets``' asyncio server, no
Django, no Redis) that answers a subscribe frame and writes each message it gets from
this process to every subscriber with ``websockets.broadcast``. The JSON names the
channel layer, the number of server and client processes, the descriptor limit, and
the ratios portal ÷ raw of p50 and p99. Also: the round trip of a raw Redis pub/sub
message on the same Redis.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/ws_fanout.py \
        [--clients 1000] [--events 30] [--interval 0.5] [--web-processes 1] \
        [--client-processes 2] [--no-batch] [--no-raw] [--db-pool 4]

Each web process keeps a pool of ``--db-pool`` PostgreSQL connections, as
``deploy/isotope.env.example`` sets ``ISOTOPE_DB_POOL_SIZE=4``; with ``--db-pool 0`` every
database call of a handshake (session, user, language) opens a connection of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    PRODUCTION,
    bench_database,
    django_env,
    free_port,
    percentiles,
    spawn,
    stop,
    wait_http,
)
from portal.workers import ws_per_message_deflate  # noqa: E402


def raise_fd_limit(wanted: int) -> int:
    """Each client and its server side need a descriptor: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def seed(clients: int) -> tuple[object, list[str]]:
    """Tenant ``bench`` with one viewer, and ``clients`` sessions of that viewer."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from tenants import services
    from tenants.choices import Role

    tenant = services.tenant_create(actor=None, slug="bench", name="Bench")
    user = get_user_model().objects.create_user("watcher", password=None)
    services.membership_add(actor=None, tenant=tenant, user=user, role=Role.VIEWER)
    data = {
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: user.get_session_auth_hash(),
    }
    store = SessionStore()
    expires = timezone.now() + timezone.timedelta(hours=1)
    keys = [store._get_new_session_key() for _ in range(clients)]
    encoded = store.encode(data)
    Session.objects.bulk_create(
        Session(session_key=key, session_data=encoded, expire_date=expires) for key in keys
    )
    return tenant, keys


class Client:
    """One browser tab: a socket subscribed to the tenant stream, recording arrivals."""

    def __init__(self, index: int):
        self.index = index
        self.arrivals: dict[int, float] = {}
        self.seqs: list[int] = []
        self.frames = 0
        self.socket = None

    async def open(self, url: str, origin: str, session_key: str | None) -> None:
        from websockets.asyncio.client import connect

        headers = {"Cookie": f"sessionid={session_key}"} if session_key else {}
        self.socket = await connect(
            url, origin=origin, additional_headers=headers, open_timeout=120, max_queue=None
        )
        await self.socket.send(json.dumps({"type": "subscribe", "tenant": "bench"}))
        while True:
            frame = json.loads(await self.socket.recv())
            if frame["type"] == "subscribed":
                return
            if frame["type"] == "error":
                raise RuntimeError(f"client {self.index}: {frame}")

    async def listen(self) -> None:
        async for raw in self.socket:
            now = time.monotonic()
            self.frames += 1
            frame = json.loads(raw)
            for message in frame["messages"] if frame.get("type") == "batch" else [frame]:
                if message.get("type") != "event":
                    continue
                self.seqs.append(message["seq"])
                text = message["data"]["message"]
                if text.startswith("bench "):
                    self.arrivals[int(text.split()[1])] = now


def client_process(url: str, origin: str, keys: list, first: int, pipe) -> None:
    """A process of browsers: open and subscribe one socket per key (``None``: no
    cookie), say how many are open, record arrivals until told to stop, send back each
    client's arrivals, the frames and the sequence gaps."""
    raise_fd_limit(len(keys) * 2 + 256)

    async def browse() -> None:
        clients = [Client(first + n) for n in range(len(keys))]
        failed = 0
        for batch in range(0, len(clients), 50):  # a browser-like arrival rate
            opened = await asyncio.gather(
                *(c.open(url, origin, keys[c.index - first]) for c in clients[batch : batch + 50]),
                return_exceptions=True,
            )
            failed += sum(1 for outcome in opened if isinstance(outcome, BaseException))
        clients = [c for c in clients if c.socket is not None and c.socket.state.name == "OPEN"]
        listeners = [asyncio.create_task(c.listen()) for c in clients]
        pipe.send({"ready": len(clients), "failed": failed})
        # After the last publish: {"events": n, "settle": s}; wait until every client
        # has all n events or s seconds have passed (then the rest count as lost).
        done = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        deadline = time.monotonic() + done["settle"]
        while time.monotonic() < deadline and any(
            len(c.arrivals) < done["events"] for c in clients
        ):
            await asyncio.sleep(0.1)
        for task in listeners:
            task.cancel()
        await asyncio.gather(*(c.socket.close() for c in clients), return_exceptions=True)
        gaps = sum(
            1 for c in clients for a, b in zip(c.seqs, c.seqs[1:], strict=False) if b != a + 1
        )
        pipe.send(
            {
                "arrivals": [c.arrivals for c in clients],
                "frames": sum(c.frames for c in clients),
                "seq_gaps": gaps,
            }
        )

    asyncio.run(browse())


def raw_server(port: int, pipe) -> None:
    """The baseline: subscribe → ``subscribed``; every frame from the publisher (its
    first frame is ``{"type": "publish"}``) goes to every subscriber as an event."""
    from websockets.asyncio.server import broadcast, serve

    raise_fd_limit(1 << 20)
    subscribers: set = set()
    seq = 0

    async def handler(socket) -> None:
        nonlocal seq
        hello = json.loads(await socket.recv())
        if hello.get("type") == "publish":
            async for text in socket:
                seq += 1
                data = {"message": json.loads(text)["message"]}
                frame = {"type": "event", "stream": "tenant.bench", "seq": seq, "data": data}
                broadcast(subscribers, json.dumps(frame))
            return
        await socket.send(json.dumps({"type": "subscribed", "stream": "tenant.bench", "seq": 0}))
        subscribers.add(socket)
        try:
            await socket.wait_closed()
        finally:
            subscribers.discard(socket)

    async def serve_until_stopped() -> None:
        async with serve(handler, "127.0.0.1", port, max_queue=None, backlog=4096):
            pipe.send("listening")
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"

    asyncio.run(serve_until_stopped())


async def redis_baseline(url: str, rounds: int = 200) -> dict:
    """Round trip of one raw Redis pub/sub message (publish → subscriber receives)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe("isotope:bench:rtt")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    timings = []
    for i in range(rounds):
        start = time.perf_counter()
        await client.publish("isotope:bench:rtt", str(i))
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if message is not None:
                break
        timings.append(time.perf_counter() - start)
    await pubsub.aclose()
    await client.aclose()
    return percentiles(timings)


def fanout(args, url: str, origin: str, keys: list, publish) -> dict:
    """Open the clients in ``--client-processes`` processes, call ``publish(i)`` for
    each event, collect the arrivals: latency, losses, gaps, frames."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    share = -(-len(keys) // args.client_processes)
    pipes, processes = [], []
    started = time.monotonic()
    for first in range(0, len(keys), share):
        ours, theirs = context.Pipe()
        process = context.Process(
            target=client_process, args=(url, origin, keys[first : first + share], first, theirs)
        )
        process.start()
        pipes.append(ours)
        processes.append(process)
    connected = failed = 0
    for pipe in pipes:
        if not pipe.poll(1800):
            raise RuntimeError("a client process did not open its sockets in 30 minutes")
        hello = pipe.recv()
        connected += hello["ready"]
        failed += hello["failed"]
    connect_seconds = time.monotonic() - started

    sent: dict[int, float] = {}
    publish_calls = []
    for i in range(args.events):
        sent[i] = time.monotonic()
        publish(i)
        publish_calls.append(time.monotonic() - sent[i])
        time.sleep(args.interval)
    for pipe in pipes:  # the last events' frames may still be on their way
        pipe.send({"events": args.events, "settle": args.settle})
    arrivals: list[dict[int, float]] = []
    gaps = frames = 0
    for pipe, process in zip(pipes, processes, strict=True):
        if not pipe.poll(args.settle + 120):
            raise RuntimeError("a client process did not report")
        report = pipe.recv()
        arrivals += report["arrivals"]
        gaps += report["seq_gaps"]
        frames += report["frames"]
        process.join(timeout=60)

    expected = args.events * connected
    latencies = [t - sent[i] for client in arrivals for i, t in client.items()]
    per_event_last = [
        max(c[i] for c in arrivals if i in c) - sent[i]
        for i in range(args.events)
        if any(i in c for c in arrivals)
    ]
    return {
        "clients_connected": connected,
        "clients_failed": failed,
        "connect_and_subscribe_seconds": round(connect_seconds, 2),
        "expected": expected,
        "received": len(latencies),
        "lost": expected - len(latencies),
        "frames": frames,
        "seq_gaps": gaps,
        "publish_to_receive": percentiles(latencies),
        "publish_to_last_client": percentiles(per_event_last),
        "publish_call": percentiles(publish_calls),
    }


def run_raw(args, clients: int) -> dict:
    """The same fan-out through the trivial broadcast server (a process of its own)."""
    import multiprocessing

    from websockets.sync.client import connect

    port = free_port()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=raw_server, args=(port, theirs))
    server.start()
    try:
        if not ours.poll(60) or ours.recv() != "listening":
            raise RuntimeError("the raw server did not start")
        with connect(f"ws://127.0.0.1:{port}/") as publisher:
            publisher.send(json.dumps({"type": "publish"}))
            return fanout(
                args,
                f"ws://127.0.0.1:{port}/",
                f"http://127.0.0.1:{port}",
                [None] * clients,
                lambda i: publisher.send(json.dumps({"message": f"bench {i}"})),
            )
    finally:
        ours.send("stop")
        server.join(timeout=30)
        if server.is_alive():
            server.kill()


def run_portal(args, port: int, keys: list[str], tenant) -> dict:
    """Events through ``event_publish`` to the web tier's ``/ws/`` sockets."""
    from monitoring.services import event_publish

    def publish(i: int) -> None:
        event_publish(tenant=tenant, kind="vm", name="fanout", reason="Bench", message=f"bench {i}")

    path = "/ws/" if args.no_batch else "/ws/?batch=1"
    return fanout(args, f"ws://127.0.0.1:{port}{path}", f"http://127.0.0.1:{port}", keys, publish)


def ratio(portal: dict, raw: dict | None, key: str) -> float | None:
    if not raw:
        return None
    mine = portal["publish_to_receive"].get(key)
    theirs = raw["publish_to_receive"].get(key)
    return round(mine / theirs, 1) if mine is not None and theirs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between events")
    parser.add_argument(
        "--settle",
        type=float,
        default=60,
        help="after the last publish, the longest wait for every event to reach every client",
    )
    parser.add_argument("--web-processes", type=int, default=1)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--no-batch", action="store_true", help="open /ws/ (no coalescing)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw baseline")
    parser.add_argument(
        "--db-pool",
        type=int,
        default=4,
        help="ISOTOPE_DB_POOL_SIZE of the web processes (4, as deploy/ sets it; 0: none)",
    )
    args = parser.parse_args()
    # Clients and server sockets share the machine: lift the soft limit (the processes
    # started from here inherit it); the JSON says what it was.
    fd_limit = raise_fd_limit(args.clients * 2 + 512)
    fd_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    raw = None if args.no_raw else run_raw(args, args.clients)

    database_url = bench_database("isotope_bench_ws")
    # The sessions made here (signed data, the user's auth hash) must read as valid in
    # the web tier: the same SECRET_KEY on both sides.
    os.environ["SECRET_KEY"] = PRODUCTION["SECRET_KEY"]
    os.environ.update(django_env(database_url))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    tenant, keys = seed(args.clients)

    from django.conf import settings

    port = free_port()
    env = django_env(
        database_url,
        ISOTOPE_WEB_PROCESSES=str(args.web_processes),
        ISOTOPE_WEB_BIND=f"127.0.0.1:{port}",
        ISOTOPE_LOG_LEVEL="WARNING",
        ISOTOPE_DB_POOL_SIZE=str(args.db_pool),
        **PRODUCTION,
    )
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    web = spawn(
        [gunicorn, "-c", "deploy/gunicorn.conf.py", "portal.asgi:application"],
        env,
        "ws_fanout-web.log",
    )
    try:
        wait_http(port, timeout=60)
        time.sleep(5)  # every process imports the app before the first socket arrives
        baseline = asyncio.run(redis_baseline(os.environ["REDIS_URL"]))
        portal = run_portal(args, port, keys, tenant)
    finally:
        stop(web)
    print(
        json.dumps(
            {
                "benchmark": "ws_fanout",
                "clients": args.clients,
                "events": args.events,
                "interval_s": args.interval,
                "settle_s": args.settle,
                "fd_limit": {"soft": fd_limit, "hard": fd_hard},
                "server": f"gunicorn, {args.web_processes} uvicorn process(es), websockets-sansio",
                "web_processes": args.web_processes,
                "server_debug": PRODUCTION["ISOTOPE_DEBUG"] == "1",
                "ws_per_message_deflate": ws_per_message_deflate(),
                "db_pool_size": args.db_pool,
                "raw_server_processes": 0 if raw is None else 1,
                "client_processes": args.client_processes,
                "cores": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
                "socket_path": "/ws/" if args.no_batch else "/ws/?batch=1",
                "batch_tick_ms": None if args.no_batch else settings.ISOTOPE_WS_BATCH_MS,
                "portal": portal,
                "raw": raw,
                "portal_over_raw": {
                    "p50": ratio(portal, raw, "p50_ms"),
                    "p99": ratio(portal, raw, "p99_ms"),
                },
                "redis_pubsub_round_trip": baseline,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
