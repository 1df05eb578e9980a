"""Websocket fan-out benchmark: one tenant stream, many browsers.

The real ASGI server (uvicorn, one process, as a subprocess) serves ``/ws/``; this
process opens C websocket clients on loopback (``websockets``), each signed in with its
own session (created directly in the database) and an allowed ``Origin``, subscribed to
the tenant ``bench``. It then publishes N events through ``monitoring.services.
event_publish`` (database row, Redis sequence number, channel layer) and measures, for
every client and event, publish→receive latency; lost = expected − received, and each
client checks that its sequence numbers have no gaps. Baseline in the same run: the
round trip of a raw Redis pub/sub message on the same Redis.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/ws_fanout.py \
        [--clients 1000] [--events 30] [--interval 0.5]
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
    bench_database,
    django_env,
    free_port,
    percentiles,
    spawn,
    stop,
    wait_http,
)


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
        self.socket = None

    async def open(self, url: str, origin: str, session_key: str) -> None:
        from websockets.asyncio.client import connect

        self.socket = await connect(
            url,
            origin=origin,
            additional_headers={"Cookie": f"sessionid={session_key}"},
            open_timeout=60,
            max_queue=None,
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
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame.get("type") != "event":
                continue
            self.seqs.append(frame["seq"])
            message = frame["data"]["message"]
            if message.startswith("bench "):
                self.arrivals[int(message.split()[1])] = now


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


async def run(args, port: int, keys: list[str], tenant) -> dict:
    from monitoring.services import event_publish

    url = f"ws://127.0.0.1:{port}/ws/"
    origin = f"http://127.0.0.1:{port}"
    clients = [Client(i) for i in range(args.clients)]
    started = time.perf_counter()
    for batch in range(0, len(clients), 50):  # a browser-like arrival rate, not a stampede
        await asyncio.gather(
            *(c.open(url, origin, keys[c.index]) for c in clients[batch : batch + 50])
        )
    connect_seconds = time.perf_counter() - started
    listeners = [asyncio.create_task(c.listen()) for c in clients]

    sent: dict[int, float] = {}
    publish_calls = []

    def publish(i: int) -> None:
        sent[i] = time.perf_counter()
        event_publish(tenant=tenant, kind="vm", name="fanout", reason="Bench", message=f"bench {i}")
        publish_calls.append(time.perf_counter() - sent[i])

    for i in range(args.events):
        await asyncio.to_thread(publish, i)
        await asyncio.sleep(args.interval)
    expected = args.events * args.clients
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(len(c.arrivals) for c in clients) >= expected:
            break
        await asyncio.sleep(0.1)

    latencies = [t - sent[i] for c in clients for i, t in c.arrivals.items()]
    per_event_last = [
        max(c.arrivals[i] for c in clients if i in c.arrivals) - sent[i]
        for i in range(args.events)
        if any(i in c.arrivals for c in clients)
    ]
    gaps = sum(1 for c in clients for a, b in zip(c.seqs, c.seqs[1:], strict=False) if b != a + 1)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(c.socket.close() for c in clients), return_exceptions=True)
    received = len(latencies)
    return {
        "connect_and_subscribe_seconds": round(connect_seconds, 2),
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "seq_gaps": gaps,
        "publish_to_receive": percentiles(latencies),
        "publish_to_last_client": percentiles(per_event_last),
        "event_publish_call": percentiles(publish_calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between events")
    args = parser.parse_args()
    fd_limit = raise_fd_limit(args.clients * 2 + 512)

    database_url = bench_database("isotope_bench_ws")
    os.environ.update(django_env(database_url))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    tenant, keys = seed(args.clients)

    port = free_port()
    python = sys.executable
    web = spawn(
        [python, "-m", "uvicorn", "portal.asgi:application", "--port", str(port)]
        + ["--ws", "websockets-sansio", "--log-level", "warning", "--lifespan", "off"],
        django_env(database_url),
        "ws_fanout-uvicorn.log",
    )
    try:
        wait_http(port)
        baseline = asyncio.run(redis_baseline(os.environ["REDIS_URL"]))
        result = asyncio.run(run(args, port, keys, tenant))
    finally:
        stop(web)
    print(
        json.dumps(
            {
                "benchmark": "ws_fanout",
                "clients": args.clients,
                "events": args.events,
                "interval_s": args.interval,
                "fd_limit": fd_limit,
                "server": "uvicorn, 1 process, websockets-sansio",
                **result,
                "redis_pubsub_round_trip": baseline,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
