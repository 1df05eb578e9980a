"""Tabs reconnecting after their web server dies behind nginx, against the same tabs
reconnecting to a live layout, in one run.

The production layout on loopback (``tools/nginx_site.py``): nginx with the shipped
site file (TLS, websocket upgrade, round robin) in front of two web servers, each the
Procfile's web command (gunicorn, ``deploy/gunicorn.conf.py``, one uvicorn process),
production settings (``DEBUG`` off, a pool of 4 database connections per process).
``--tabs`` tabs, in a process of their own: websockets' asyncio client through nginx's
https port, each signed in with a session of its own, subscribed to tenant ``bench``'s
stream on ``/ws/?batch=1`` as ``static/js/live.js`` opens it. A tab whose socket closes
reconnects at once and subscribes "since" the seq it holds, and the server follows with
the state it missed (live.js does the same after a back-off of 0.5 s plus jitter, which
is the page's wait and not measured here); with ``--no-since`` it subscribes and asks
for a resync itself when the stream moved on, as live.js did before 2026-12-07.

Each round, one server after the other:

- **kill**: SIGKILL to the whole server (master and its process), then at once an event
  through ``monitoring.services.event_publish``. For each tab whose socket dropped: the
  time from the kill to that event in hand (received live once back, or in the resync).
- the killed server is started again and answers ``/healthz`` before the next step.
- **baseline**: the same tabs drop their own connections (the TCP connection aborted,
  as the kill's is from nginx's side), both servers alive, then at once an event. For
  each: the time from the order to that event in hand. Same tabs, same steps, no
  dead server: the ratio kill ÷ baseline is what a dead server costs a reconnect.

A resync carries the tenant's events (the last 50) and the live state of each of its
resources: ``--states N`` gives tenant ``bench`` N VM states first (as a tenant with N
VMs has; default 0), stored before the tabs open: a tab that subscribes "since" its seq
gets them by name only (whole with ``--no-since``, as before 2026-12-07). The tenant's
states left in Redis by other benchmarks (same slug) are cleared first.

For each step, the CPU each part of the machine used per tab that came back (``cpu``:
the web servers, nginx, the tabs' process, PostgreSQL, the whole machine), from the
step's order until every tab held its event.

At the end every tab must hold every event published (live or by resync): ``lost``
counts the ones missing. Times are the machine's monotonic clock, shared by all
processes.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/ws_reconnect.py \
        [--tabs 200] [--rounds 4] [--states 0] [--no-since] [--timeout 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    PRODUCTION,
    bench_database,
    cpu_seconds,
    django_env,
    free_port,
    percentiles,
    spawn,
    stop,
)
from bench.vm_create import postmaster_pid  # noqa: E402
from bench.ws_fanout import raise_fd_limit, seed  # noqa: E402
from tools.nginx_site import start_nginx  # noqa: E402

TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE
STREAM = "tenant.bench"


def messages(frame: dict) -> list[dict]:
    """The messages of a frame: a batch's, in order, or the frame itself."""
    return frame["messages"] if frame.get("type") == "batch" else [frame]


class Tab:
    """One browser tab: a socket through nginx that comes back whenever it drops."""

    def __init__(self, index: int, url: str, cookie: str, since: bool = True):
        self.index, self.url, self.cookie, self.since = index, url, cookie, since
        self.got: dict[int, float] = {}  # event number → when it was first in hand
        self.last: int | None = None  # the stream's seq this tab is up to
        self.drops = 0
        self.failed_opens = 0
        self.socket = None
        self.stopping = False

    def take(self, event: dict) -> None:
        """Note when an event of the bench's (``bench <n>``) was first in hand."""
        text = event["message"]
        if text.startswith("bench "):
            self.got.setdefault(int(text.split()[1]), time.monotonic())

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.socket = await connect(
            self.url,
            origin=self.url.replace("wss://", "https://").split("/ws/")[0],
            additional_headers={"Cookie": self.cookie},
            ssl=TLS,
            open_timeout=60,
            max_queue=None,
        )
        subscribe = {"type": "subscribe", "tenant": "bench"}
        if self.last is not None and self.since:  # as live.js does: the server sends the state
            subscribe["since"] = self.last
        await self.socket.send(json.dumps(subscribe))
        while True:
            for message in messages(json.loads(await self.socket.recv())):
                if message["type"] == "event":
                    self.take(message["data"])
                elif message["type"] == "subscribed":
                    moved = self.last is not None and message["seq"] != self.last
                    asked = "since" in subscribe
                    self.last = message["seq"]
                    if not moved:
                        return
                    if not asked:
                        await self.socket.send(json.dumps({"type": "resync", "stream": STREAM}))
                elif message["type"] == "resync":
                    for event in message["data"]["events"]:
                        self.take(event)
                    self.last = message["seq"]
                    return
                elif message["type"] == "error":
                    raise RuntimeError(f"tab {self.index}: {message}")

    async def run(self) -> None:
        from websockets.exceptions import ConnectionClosed, WebSocketException

        while not self.stopping:
            try:
                await self.open()
            except (OSError, TimeoutError, WebSocketException):
                self.failed_opens += 1
                await asyncio.sleep(0.05)
                continue
            try:
                async for raw in self.socket:
                    for message in messages(json.loads(raw)):
                        if message.get("type") == "event" and message["stream"] == STREAM:
                            self.last = message["seq"]
                            self.take(message["data"])
            except ConnectionClosed:
                pass
            if not self.stopping:
                self.drops += 1

    def abort(self) -> None:
        """Cut the connection as a dead server's is cut: no closing handshake."""
        self.socket.transport.abort()


def tab_process(url: str, cookies: list[str], since: bool, pipe) -> None:
    """The tabs: open them (50 at a time), then answer the bench's orders:
    ``{"wait": n, "timeout": s}`` → when every tab holds event n (or s seconds passed),
    each tab's time for n and its drops so far; ``{"abort": [tab, ...]}`` → cut those
    tabs' connections, reply "aborted"; ``{"stop": true}`` → close all, reply every
    tab's events and its failed opens."""
    raise_fd_limit(len(cookies) * 2 + 256)

    async def main() -> None:
        tabs = [Tab(i, url, cookie, since) for i, cookie in enumerate(cookies)]
        tasks = []
        for first in range(0, len(tabs), 50):
            batch = tabs[first : first + 50]
            tasks += [asyncio.create_task(tab.run()) for tab in batch]
            while any(tab.last is None for tab in batch):
                await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        pipe.send({"ready": len(tabs)})
        while True:
            order = await loop.run_in_executor(None, pipe.recv)
            if "wait" in order:
                deadline = time.monotonic() + order["timeout"]
                while time.monotonic() < deadline and any(order["wait"] not in t.got for t in tabs):
                    await asyncio.sleep(0.01)
                pipe.send(
                    {
                        "got": [t.got.get(order["wait"]) for t in tabs],
                        "drops": [t.drops for t in tabs],
                    }
                )
            elif "abort" in order:
                for index in order["abort"]:
                    tabs[index].abort()
                pipe.send("aborted")
            else:
                for tab in tabs:
                    tab.stopping = True
                await asyncio.gather(*(t.socket.close() for t in tabs), return_exceptions=True)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                pipe.send(
                    {
                        "events": [sorted(t.got) for t in tabs],
                        "failed_opens": sum(t.failed_opens for t in tabs),
                    }
                )
                return

    asyncio.run(main())


def seed_states(count: int) -> None:
    """Tenant ``bench``'s live states: none but ``count`` VMs' (a running VM's state as
    the portal stores it), each stored at the tenant stream's current seq (as a tenant's
    states are before its tabs open)."""
    from monitoring import live
    from monitoring.groups import tenant_group

    key = live.STATE_KEY.format(slug="bench")
    tags = live.STATE_SEQ_KEY.format(slug="bench")
    live.redis_client().delete(key, tags)
    if not count:
        return
    seq = live.seq_current(tenant_group("bench"))
    live.redis_client().hset(tags, mapping={f"vm/vm{i}": seq for i in range(count)})
    state = {
        "phase": "Running",
        "message": "",
        "phaseChanged": "2026-12-07T00:00:00.000000Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "NoReadinessProbe",
                "message": "libvirt's test driver runs no guest: Ready follows Running.",
                "lastTransitionTime": "2026-12-07T00:00:00.000000Z",
            }
        ],
        "desiredState": "running",
        "labels": {},
        "resourceVersion": "5",
        "actionsByRole": {
            "viewer": [],
            "operator": ["stop", "force-stop", "pause", "reboot", "delete"],
            "admin": ["stop", "force-stop", "pause", "reboot", "delete"],
        },
    }
    live.redis_client().hset(
        key,
        mapping={
            f"vm/vm{i}": json.dumps({**state, "uid": f"00000000-0000-0000-0000-{i:012d}"})
            for i in range(count)
        },
    )


def elapsed(report: dict, tabs: list[int], started: float) -> list[float | None]:
    """For each of ``tabs``, seconds from ``started`` to the event in hand (None: never)."""
    return [report["got"][i] - started if report["got"][i] else None for i in tabs]


def healthy(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the web server on {port} did not answer /healthz")


def main() -> None:
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--states", type=int, default=0, help="VM states of the tenant")
    parser.add_argument(
        "--no-since",
        action="store_true",
        help="tabs subscribe without their seq and ask for the resync (live.js before 2026-12-07)",
    )
    parser.add_argument("--timeout", type=float, default=60, help="longest wait for an event")
    args = parser.parse_args()
    raise_fd_limit(args.tabs * 4 + 512)

    database_url = bench_database("isotope_bench_ws")
    os.environ["SECRET_KEY"] = PRODUCTION["SECRET_KEY"]
    os.environ.update(django_env(database_url, **PRODUCTION))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from monitoring.services import event_publish

    call_command("migrate", verbosity=0)
    tenant, keys = seed(args.tabs)
    seed_states(args.states)

    ports, http, https = [free_port(), free_port()], free_port(), free_port()
    origin = f"https://127.0.0.1:{https}"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))

    def start_web(port: int):
        env = django_env(
            database_url,
            ISOTOPE_WEB_PROCESSES="1",
            ISOTOPE_WEB_BIND=f"127.0.0.1:{port}",
            ISOTOPE_LOG_LEVEL="WARNING",
            ISOTOPE_DB_POOL_SIZE="4",
            CSRF_TRUSTED_ORIGINS=origin,
            **PRODUCTION,
        )
        command = [gunicorn, "-c", "deploy/gunicorn.conf.py", "portal.asgi:application"]
        return spawn(command, env, f"ws_reconnect-web{port}.log")

    def publish(n: int) -> None:
        event_publish(tenant=tenant, kind="vm", name="tab", reason="Bench", message=f"bench {n}")

    folder = Path(tempfile.mkdtemp(prefix="ws_reconnect-"))
    webs = {port: start_web(port) for port in ports}
    proxy = start_nginx(folder, ports, http, https, connections=args.tabs * 2 + 256)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    cookies = [f"{settings.SESSION_COOKIE_NAME}={key}" for key in keys]
    tabs = context.Process(
        target=tab_process,
        args=(f"wss://127.0.0.1:{https}/ws/?batch=1", cookies, not args.no_since, theirs),
    )
    postgres = postmaster_pid()

    def roots() -> dict[str, int]:
        found = {f"web{i}": webs[port].pid for i, port in enumerate(ports, 1)}
        return {**found, "nginx": proxy.pid, "tabs": tabs.pid, "postgres": postgres}

    def cpu_used(before: dict, after: dict, tabs_back: int) -> dict:
        """CPU ms per tab that came back, by part; a server killed meanwhile counts
        for nothing (its figures went with it)."""
        spent = {name: after[name] - before[name] for name in after if name in before}
        web = sum(v for name, v in spent.items() if name.startswith("web") and v >= 0)
        parts = {"web": web, **{k: v for k, v in spent.items() if not k.startswith("web")}}
        return {k: round(v * 1000 / max(tabs_back, 1), 2) for k, v in parts.items()}

    rounds, n = [], 0
    try:
        for port in ports:
            healthy(port)
        tabs.start()
        if not ours.poll(600):
            raise RuntimeError("the tabs did not open in 10 minutes")
        ours.recv()

        def wait(event: int) -> dict:
            ours.send({"wait": event, "timeout": args.timeout})
            return ours.recv()

        drops = [0] * args.tabs
        for round_ in range(args.rounds):
            port = ports[round_ % 2]
            # kill
            n += 1
            before = cpu_seconds(roots())
            started = time.monotonic()
            os.killpg(webs[port].pid, signal.SIGKILL)
            publish(n)
            report = wait(n)
            kill_cpu = cpu_seconds(roots())
            webs[port].wait()
            affected = [i for i, d in enumerate(report["drops"]) if d > drops[i]]
            drops = report["drops"]
            kill = elapsed(report, affected, started)
            kill_cpu = cpu_used(before, kill_cpu, len(affected))
            # the server back
            webs[port] = start_web(port)
            healthy(port)
            # baseline: the same tabs drop their connections with both servers alive
            n += 1
            before = cpu_seconds(roots())
            started = time.monotonic()
            ours.send({"abort": affected})
            ours.recv()
            publish(n)
            report = wait(n)
            base_cpu = cpu_used(before, cpu_seconds(roots()), len(affected))
            drops = report["drops"]
            base = elapsed(report, affected, started)
            rounds.append(
                {
                    "killed_server": round_ % 2 + 1,
                    "tabs_dropped": len(affected),
                    "kill_to_event": percentiles([t for t in kill if t is not None]),
                    "kill_missing": sum(t is None for t in kill),
                    "kill_cpu_ms_per_tab": kill_cpu,
                    "baseline_to_event": percentiles([t for t in base if t is not None]),
                    "baseline_missing": sum(t is None for t in base),
                    "baseline_cpu_ms_per_tab": base_cpu,
                }
            )
        n += 1
        publish(n)
        wait(n)
        ours.send({"stop": True})
        final = ours.recv()
    finally:
        tabs.join(timeout=30)
        if tabs.is_alive():
            tabs.kill()
        stop(proxy)
        for web in webs.values():
            stop(web)

    lost = sum(len(set(range(1, n + 1)) - set(events)) for events in final["events"])
    kill_all = [r["kill_to_event"] for r in rounds]
    base_all = [r["baseline_to_event"] for r in rounds]

    def ratio(key: str) -> list:
        return [
            round(k[key] / b[key], 2) if k.get(key) and b.get(key) else None
            for k, b in zip(kill_all, base_all, strict=True)
        ]

    print(
        json.dumps(
            {
                "benchmark": "ws_reconnect",
                "tabs": args.tabs,
                "resource_states": args.states,
                "subscribe_since": not args.no_since,
                "rounds": rounds,
                "kill_over_baseline": {"p50": ratio("p50_ms"), "p99": ratio("p99_ms")},
                "events_published": n,
                "lost": lost,
                "failed_opens": final["failed_opens"],
                "layout": "nginx (deploy/nginx/isotope.conf, TLS), 2 gunicorn × 1 uvicorn process",
                "tab_processes": 1,
                "socket_path": "/ws/?batch=1",
                "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
                "cores": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "nginx_folder": str(folder),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
