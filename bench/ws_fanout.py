"""Websocket fan-out benchmark: one tenant stream, many browsers.

The real web tier (gunicorn with ``deploy/gunicorn.conf.py``, ``--web-processes``
uvicorn processes, as a subprocess) serves ``/ws/``; ``--client-processes`` separate
processes open the C websocket clients between them on loopback (``websockets``), each
signed in with its own session (created directly in the database) and an allowed
``Origin``, subscribed to the tenant ``bench``. This
process then publishes N events through ``monitoring.services.event_publish`` (database
row, Redis sequence number, channel layer) and measures, for every client and event,
publish→receive latency on the machine's monotonic clock (shared by all processes);
lost = expected − received, and each client checks that its sequence numbers have no
gaps. The JSON names the channel layer that ran. Baseline in the same run: the round
trip of a raw Redis pub/sub message on the same Redis.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/ws_fanout.py \
        [--clients 1000] [--events 30] [--interval 0.5] [--web-processes 1] \
        [--client-processes 2]
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
            now = time.monotonic()
            message = json.loads(raw)
            if message.get("type") != "event":
                continue
            self.seqs.append(message["seq"])
            text = message["data"]["message"]
            if text.startswith("bench "):
                self.arrivals[int(text.split()[1])] = now


def client_process(url: str, origin: str, keys: list[str], first: int, pipe) -> None:
    """A process of browsers: open and subscribe one socket per key, say "ready", record
    arrivals until told to stop, send back each client's arrivals and sequence gaps."""
    raise_fd_limit(len(keys) * 2 + 256)

    async def browse() -> None:
        clients = [Client(first + n) for n in range(len(keys))]
        for batch in range(0, len(clients), 50):  # a browser-like arrival rate
            await asyncio.gather(
                *(c.open(url, origin, keys[c.index - first]) for c in clients[batch : batch + 50])
            )
        listeners = [asyncio.create_task(c.listen()) for c in clients]
        pipe.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"
        for task in listeners:
            task.cancel()
        await asyncio.gather(*(c.socket.close() for c in clients), return_exceptions=True)
        gaps = sum(
            1 for c in clients for a, b in zip(c.seqs, c.seqs[1:], strict=False) if b != a + 1
        )
        pipe.send({"arrivals": [c.arrivals for c in clients], "seq_gaps": gaps})

    asyncio.run(browse())


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


def run(args, port: int, keys: list[str], tenant) -> dict:
    import multiprocessing

    from monitoring.services import event_publish

    url = f"ws://127.0.0.1:{port}/ws/"
    origin = f"http://127.0.0.1:{port}"
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
    for pipe in pipes:
        if not pipe.poll(600) or pipe.recv() != "ready":
            raise RuntimeError("a client process did not connect its sockets")
    connect_seconds = time.monotonic() - started

    sent: dict[int, float] = {}
    publish_calls = []
    for i in range(args.events):
        sent[i] = time.monotonic()
        event_publish(tenant=tenant, kind="vm", name="fanout", reason="Bench", message=f"bench {i}")
        publish_calls.append(time.monotonic() - sent[i])
        time.sleep(args.interval)
    time.sleep(args.settle)  # the last event's frames are still on their way
    for pipe in pipes:
        pipe.send("stop")
    arrivals: list[dict[int, float]] = []
    gaps = 0
    for pipe, process in zip(pipes, processes, strict=True):
        report = pipe.recv()
        arrivals += report["arrivals"]
        gaps += report["seq_gaps"]
        process.join(timeout=30)

    expected = args.events * len(keys)
    latencies = [t - sent[i] for client in arrivals for i, t in client.items()]
    per_event_last = [
        max(c[i] for c in arrivals if i in c) - sent[i]
        for i in range(args.events)
        if any(i in c for c in arrivals)
    ]
    return {
        "connect_and_subscribe_seconds": round(connect_seconds, 2),
        "expected": expected,
        "received": len(latencies),
        "lost": expected - len(latencies),
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
    parser.add_argument("--settle", type=float, default=10, help="seconds to wait at the end")
    parser.add_argument("--web-processes", type=int, default=1)
    parser.add_argument("--client-processes", type=int, default=2)
    args = parser.parse_args()
    fd_limit = raise_fd_limit(args.clients * 2 + 512)

    database_url = bench_database("isotope_bench_ws")
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
        result = run(args, port, keys, tenant)
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
                "server": f"gunicorn, {args.web_processes} uvicorn process(es), websockets-sansio",
                "web_processes": args.web_processes,
                "client_processes": args.client_processes,
                "cores": os.cpu_count(),
                "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
                **result,
                "redis_pubsub_round_trip": baseline,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
