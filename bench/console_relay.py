"""Console relay: throughput and added latency of /ws/console/ versus direct VNC TCP.

Two upstreams, each measured directly (the baseline) and through the proxy websocket
(ticket, Origin, session, slot, endpoint lookup, client filter, relay) in the same run:

- ``qemu``: one tiny QEMU guest on node1 (``qemu:///system``, 256 MiB); QEMU paces its
  framebuffer updates, so this says what a user's session costs on top of the guest;
- ``synthetic``: an RFB server of this script's own (``--serve-synthetic``, a process of
  its own) that answers every update request at once with a full raw rectangle, so the
  relay, not the VNC server, is the limit: the relay's ceiling. The portal's server for
  this part is ``bench/console_synthetic_asgi.py``: the portal's application with the
  endpoint lookup's answer (after the lookup itself ran) replaced by the synthetic
  server's address.

Per upstream and path:

- ``open``: connect until the server's ``RFB 003.008`` arrives (websocket: the ticket is
  redeemed, the slot taken, the endpoint looked up and TCP opened inside this time); the
  ticket is issued before the clock starts and timed apart (``ticket_issue``);
- ``rtt``: a non-incremental FramebufferUpdateRequest for an 8×8 corner until its raw
  update has arrived (what a keystroke's echo costs on top of the VNC server);
- ``throughput``: full-screen raw updates, ``--depth`` requests kept in flight.

    .venv/bin/python bench/console_relay.py --rounds 200 --frames 40

Prints one JSON document; logs go to var/bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    PRODUCTION,
    ROOT,
    bench_database,
    django_env,
    free_port,
    percentiles,
    spawn,
    stop,
    wait_http,
)

PASSWORD = "bench-password-console"


class TcpStream:
    extensions = None  # no websocket in between

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def read(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()


class WsStream:
    def __init__(self, ws):
        self.ws, self.buffer = ws, bytearray()
        # What the server agreed to of the client's offer (permessage-deflate or nothing).
        self.extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")

    async def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += await self.ws.recv()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def close(self) -> None:
        await self.ws.close()


async def rfb_init(stream) -> tuple[int, int, int]:
    """Handshake (security None) and raw encoding; returns (width, height, bytes/pixel)."""
    await stream.send(b"RFB 003.008\n")
    count = (await stream.read(1))[0]
    await stream.read(count)
    await stream.send(b"\x01")
    await stream.read(4)
    await stream.send(b"\x01")
    init = await stream.read(24)
    width, height, bpp = struct.unpack(">HHB", init[:5])
    await stream.read(struct.unpack(">I", init[20:24])[0])
    await stream.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw only
    return width, height, bpp // 8


async def request(stream, x: int, y: int, w: int, h: int) -> None:
    """A non-incremental FramebufferUpdateRequest for the region."""
    await stream.send(struct.pack(">BBHHHH", 3, 0, x, y, w, h))


async def read_update(stream, bytes_pp: int) -> int:
    """Read one FramebufferUpdate (raw rectangles); return its pixel bytes."""
    total = 0
    while True:
        kind = (await stream.read(1))[0]
        if kind == 0:
            break
        if kind == 2:  # bell
            continue
        raise RuntimeError(f"unexpected server message {kind}")
    (rects,) = struct.unpack(">xH", await stream.read(3))
    for _ in range(rects):
        rx, ry, rw, rh, encoding = struct.unpack(">HHHHi", await stream.read(12))
        if encoding != 0:
            raise RuntimeError(f"unexpected encoding {encoding}")
        total += len(await stream.read(rw * rh * bytes_pp))
    return total


async def measure(prepare, connect, rounds: int, frames: int, opens: int, depth: int) -> dict:
    """``prepare()`` (untimed for ``open``: the ticket, or None) and ``connect(prepared)``
    (timed)."""
    prepares, times = [], []
    prepared = None
    for _ in range(opens):
        start = time.perf_counter()
        prepared = await prepare()
        prepares.append(time.perf_counter() - start)
        start = time.perf_counter()
        stream = await connect(prepared)
        assert (await stream.read(12)).startswith(b"RFB 003.008")
        times.append(time.perf_counter() - start)
        await stream.close()
        await asyncio.sleep(0.05)
    stream = await connect(await prepare())
    await stream.read(12)
    width, height, bpp = await rfb_init(stream)
    rtts = []
    for _ in range(rounds):
        start = time.perf_counter()
        await request(stream, 0, 0, 8, 8)
        await read_update(stream, bpp)
        rtts.append(time.perf_counter() - start)
    start = time.perf_counter()
    moved = sent = 0
    while sent < min(depth, frames):
        await request(stream, 0, 0, width, height)
        sent += 1
    for _ in range(frames):
        moved += await read_update(stream, bpp)
        if sent < frames:
            await request(stream, 0, 0, width, height)
            sent += 1
    seconds = time.perf_counter() - start
    await stream.close()
    out = {
        "open": percentiles(times),
        "rtt": percentiles(rtts),
        "throughput_mib_s": round(moved / seconds / 2**20, 1),
        "frame_bytes": width * height * bpp,
        "frames": frames,
        "depth": depth,
    }
    if stream.extensions is not None:
        out["websocket_extensions"] = stream.extensions
    if prepared is not None:
        out["ticket_issue"] = percentiles(prepares)
    return out


# --- The synthetic RFB server ---------------------------------------------------------
async def serve_synthetic(port: int, width: int, height: int) -> None:
    """RFB 3.8, security None, 32-bit true colour; every FramebufferUpdateRequest gets one
    raw rectangle of the region at once (never waits for a change)."""
    pixels = os.urandom(width * height * 4)
    pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    name = b"isotope-synthetic"
    sizes = {0: 19, 4: 7, 5: 5}  # SetPixelFormat, KeyEvent, PointerEvent (after the type)

    async def session(reader, writer) -> None:
        try:
            writer.write(b"RFB 003.008\n")
            await reader.readexactly(12)
            writer.write(b"\x01\x01")  # one security type: None
            await reader.readexactly(1)
            writer.write(struct.pack(">I", 0))
            await reader.readexactly(1)  # ClientInit
            writer.write(
                struct.pack(">HH", width, height)
                + pixel_format
                + struct.pack(">I", len(name))
                + name
            )
            while True:
                kind = (await reader.readexactly(1))[0]
                if kind == 3:
                    _, x, y, w, h = struct.unpack(">BHHHH", await reader.readexactly(9))
                    w, h = min(w, width - x), min(h, height - y)
                    writer.write(
                        struct.pack(">BxH", 0, 1)
                        + struct.pack(">HHHHi", x, y, w, h, 0)
                        + pixels[: w * h * 4]
                    )
                    await writer.drain()
                elif kind == 2:  # SetEncodings
                    (count,) = struct.unpack(">xH", await reader.readexactly(3))
                    await reader.readexactly(4 * count)
                elif kind == 6:  # ClientCutText
                    (length,) = struct.unpack(">3xI", await reader.readexactly(7))
                    await reader.readexactly(length)
                elif kind in sizes:
                    await reader.readexactly(sizes[kind])
                else:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def setup_django(database_url: str) -> None:
    os.environ.update(django_env(database_url))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()


def create_guest():
    """A tenant, an operator with a browser session, and a running tiny guest."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from compute.backends.libvirt.backend import LibvirtBackend
    from compute.choices import ImageKind, Phase
    from compute.models import Host, Image, VirtualMachine
    from compute.services import reconcile
    from compute.services.hosts import host_check
    from tenants import services
    from tenants.choices import Role
    from tools.infra import read_state

    image = read_state("image")
    if not image.get("ok"):
        sys.exit(f"tiny guest image missing: {image.get('reason')}")
    tenant = services.tenant_create(actor=None, slug="bench", name="Bench")
    user = get_user_model().objects.create_user("benchop", password=PASSWORD)
    services.membership_add(actor=None, tenant=tenant, user=user, role=Role.OPERATOR)
    host = host_check(Host.objects.create(name="node1", uri="qemu:///system"))
    tiny = Image.objects.create(
        name="tiny",
        kind=ImageKind.KERNEL,
        kernel_path=image.get("kernel_bzimage") or image["kernel"],
        initrd_path=image["initrd"],
        min_memory_mib=128,
    )
    vm = VirtualMachine.objects.create(
        tenant=tenant,
        name=f"cs-bench-{secrets.token_hex(2)}",
        vcpus=1,
        memory_mib=256,
        image=tiny,
        host=host,
        phase=Phase.RUNNING,
    )
    backend = LibvirtBackend(uri=host.uri, virt_type=host.effective_virt_type or None)
    backend.define(reconcile.domain_spec(vm))
    backend.start(vm.domain_name)
    client = Client()
    client.force_login(user)
    return vm, backend, user, client.session.session_key


def proxy_client(port: int, vm, user, session_key: str, deflate: bool = True):
    """``prepare`` (issue a ticket, as the page's POST does) and ``connect`` (the
    websocket with it) for the portal on ``port``."""
    from django.conf import settings
    from websockets.asyncio.client import connect as ws_connect

    from compute.services import console as console_services

    async def prepare() -> str:
        return await asyncio.to_thread(
            lambda: (
                console_services.console_ticket_issue(
                    actor=user, vm=vm, session_key=session_key
                ).ticket
            )
        )

    async def connect(ticket: str):
        ws = await ws_connect(
            f"ws://127.0.0.1:{port}/ws/console/",
            subprotocols=["binary", f"isotope-ticket.{ticket}"],
            additional_headers={
                "Origin": f"http://127.0.0.1:{port}",
                "Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}",
            },
            max_size=None,
            compression="deflate" if deflate else None,
        )
        return WsStream(ws)

    return prepare, connect


def tcp_client(host: str, port: int):
    async def prepare() -> None:
        return None

    async def connect(_):
        return TcpStream(*await asyncio.open_connection(host, port))

    return prepare, connect


def summary(direct: dict, proxy: dict) -> dict:
    return {
        "added_rtt_p50_ms": round(proxy["rtt"]["p50_ms"] - direct["rtt"]["p50_ms"], 2),
        "added_rtt_p99_ms": round(proxy["rtt"]["p99_ms"] - direct["rtt"]["p99_ms"], 2),
        "throughput_mib_s": {
            "direct": direct["throughput_mib_s"],
            "proxy": proxy["throughput_mib_s"],
        },
        "throughput_ratio": round(proxy["throughput_mib_s"] / direct["throughput_mib_s"], 2),
        "open_p50_ms": {"direct": direct["open"]["p50_ms"], "proxy": proxy["open"]["p50_ms"]},
        "ticket_issue_p50_ms": proxy.get("ticket_issue", {}).get("p50_ms"),
    }


def portal_server(module: str, port: int, env: dict, log: str):
    """The web tier as deployed (gunicorn with ``deploy/gunicorn.conf.py``: uvicorn's
    options, ``ISOTOPE_WS_DEFLATE`` included), one process, with production settings
    (``DEBUG`` off as ``deploy/`` runs it, since 2026-12-05)."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    web_env = {
        **env,
        **PRODUCTION,
        "ISOTOPE_WEB_PROCESSES": "1",
        "ISOTOPE_WEB_BIND": f"127.0.0.1:{port}",
    }
    return spawn([gunicorn, "-c", "deploy/gunicorn.conf.py", f"{module}:application"], web_env, log)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--opens", type=int, default=20)
    parser.add_argument("--depth", type=int, default=1, help="update requests in flight (QEMU)")
    parser.add_argument("--synthetic-frames", type=int, default=200)
    parser.add_argument("--synthetic-depth", type=int, default=4)
    parser.add_argument("--synthetic-size", default="1280x800")
    parser.add_argument("--serve-synthetic", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.synthetic_size.split("x"))
    if args.serve_synthetic:
        asyncio.run(serve_synthetic(args.serve_synthetic, width, height))
        return

    database_url = bench_database("isotope_bench_console")
    # The session made here (signed data, the user's auth hash) must read as valid in
    # the web tier, which runs with production settings: the same SECRET_KEY.
    os.environ["SECRET_KEY"] = PRODUCTION["SECRET_KEY"]
    env = django_env(database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    setup_django(database_url)

    vm, backend, user, session_key = create_guest()
    results: dict = {}
    processes = []
    try:
        # QEMU's VNC server, directly and through the portal.
        port = free_port()
        processes.append(portal_server("portal.asgi", port, env, "console_relay-uvicorn.log"))
        wait_http(port, timeout=60)
        time.sleep(2)  # the guest's VNC server is up once QEMU runs; let it settle
        host, vnc_port = backend.console_endpoint(vm.domain_name)
        measured = (args.rounds, args.frames, args.opens, args.depth)
        results["qemu"] = {
            "direct": asyncio.run(measure(*tcp_client(host, vnc_port), *measured)),
            "proxy": asyncio.run(measure(*proxy_client(port, vm, user, session_key), *measured)),
        }
        stop(processes.pop())

        # The synthetic server, directly and through the portal.
        synthetic = free_port()
        processes.append(
            spawn(
                [sys.executable, __file__, "--serve-synthetic", str(synthetic)]
                + ["--synthetic-size", args.synthetic_size],
                env,
                "console_relay-synthetic.log",
            )
        )
        wait_http(synthetic)
        port = free_port()
        processes.append(
            portal_server(
                "bench.console_synthetic_asgi",
                port,
                {**env, "ISOTOPE_BENCH_VNC": f"127.0.0.1:{synthetic}"},
                "console_relay-uvicorn-synthetic.log",
            )
        )
        wait_http(port, timeout=60)
        measured = (args.rounds, args.synthetic_frames, args.opens, args.synthetic_depth)
        results["synthetic"] = {
            "direct": asyncio.run(measure(*tcp_client("127.0.0.1", synthetic), *measured)),
            "proxy": asyncio.run(measure(*proxy_client(port, vm, user, session_key), *measured)),
        }
    finally:
        for process in processes:
            stop(process)
        backend.delete(vm.domain_name)
    results["summary"] = {name: summary(r["direct"], r["proxy"]) for name, r in results.items()}
    results["setup"] = {
        "guest_mib": 256,
        "web": "gunicorn, 1 uvicorn process (deploy/gunicorn.conf.py)",
        "ISOTOPE_WS_DEFLATE": os.environ.get("ISOTOPE_WS_DEFLATE", ""),
        "synthetic_size": args.synthetic_size,
        "cpus": os.cpu_count(),
        "load_average_end": os.getloadavg(),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
