"""Console relay: throughput and added latency of /ws/console/ versus direct VNC TCP.

One tiny QEMU guest on node1 (``qemu:///system``, 256 MiB), the portal under uvicorn
(one process) as a subprocess on a private database. The same RFB client runs over a
direct TCP connection to the guest's VNC server (the baseline) and over the proxy
websocket (ticket, Origin, session, filter, relay), in the same run:

- ``open``: connect until the server's ``RFB 003.008`` arrives (websocket: the ticket is
  spent, the slot taken, the endpoint looked up and TCP opened inside this time);
- ``rtt``: a non-incremental FramebufferUpdateRequest for an 8×8 corner until its raw
  update has arrived (what a keystroke's echo costs on top of the guest);
- ``throughput``: full-screen raw updates (720×400×4 bytes each) back to back.

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


async def update(stream, x: int, y: int, w: int, h: int, bytes_pp: int) -> int:
    """Request a non-incremental update of the region; read it; return its bytes."""
    await stream.send(struct.pack(">BBHHHH", 3, 0, x, y, w, h))
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


async def measure(open_stream, rounds: int, frames: int, opens: int) -> dict:
    times = []
    for _ in range(opens):
        start = time.perf_counter()
        stream = await open_stream()
        assert (await stream.read(12)).startswith(b"RFB 003.008")
        times.append(time.perf_counter() - start)
        await stream.close()
        await asyncio.sleep(0.05)
    stream = await open_stream()
    await stream.read(12)
    width, height, bpp = await rfb_init(stream)
    rtts = []
    for _ in range(rounds):
        start = time.perf_counter()
        await update(stream, 0, 0, 8, 8, bpp)
        rtts.append(time.perf_counter() - start)
    start = time.perf_counter()
    moved = 0
    for _ in range(frames):
        moved += await update(stream, 0, 0, width, height, bpp)
    seconds = time.perf_counter() - start
    await stream.close()
    return {
        "open": percentiles(times),
        "rtt": percentiles(rtts),
        "throughput_mib_s": round(moved / seconds / 2**20, 1),
        "frame_bytes": width * height * bpp,
        "frames": frames,
    }


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--opens", type=int, default=20)
    args = parser.parse_args()
    database_url = bench_database("isotope_bench_console")
    env = django_env(database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    setup_django(database_url)
    from django.conf import settings

    from compute.services import console as console_services

    vm, backend, user, session_key = create_guest()
    port = free_port()
    server = spawn(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--port", str(port)]
        + ["--log-level", "warning", "--ws", "websockets-sansio"],
        env,
        "console_relay-uvicorn.log",
    )
    try:
        wait_http(port)
        time.sleep(2)  # the guest's VNC server is up once QEMU runs; let it settle
        host, vnc_port = backend.console_endpoint(vm.domain_name)
        from websockets.asyncio.client import connect

        async def direct():
            return TcpStream(*await asyncio.open_connection(host, vnc_port))

        async def proxied():
            ticket = await asyncio.to_thread(
                lambda: (
                    console_services.console_ticket_issue(
                        actor=user, vm=vm, session_key=session_key
                    ).ticket
                )
            )
            ws = await connect(
                f"ws://127.0.0.1:{port}/ws/console/",
                subprotocols=["binary", f"isotope-ticket.{ticket}"],
                additional_headers={
                    "Origin": f"http://127.0.0.1:{port}",
                    "Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}",
                },
                max_size=None,
            )
            return WsStream(ws)

        async def run() -> dict:
            return {
                "direct": await measure(direct, args.rounds, args.frames, args.opens),
                "proxy": await measure(proxied, args.rounds, args.frames, args.opens),
            }

        results = asyncio.run(run())
    finally:
        stop(server)
        backend.delete(vm.domain_name)
    d, p = results["direct"], results["proxy"]
    results["summary"] = {
        "added_rtt_p50_ms": round(p["rtt"]["p50_ms"] - d["rtt"]["p50_ms"], 2),
        "added_rtt_p99_ms": round(p["rtt"]["p99_ms"] - d["rtt"]["p99_ms"], 2),
        "throughput_ratio": round(p["throughput_mib_s"] / d["throughput_mib_s"], 2),
        "open_p50_ms": {"direct": d["open"]["p50_ms"], "proxy": p["open"]["p50_ms"]},
    }
    results["setup"] = {"guest_mib": 256, "uvicorn_processes": 1, "cpus": os.cpu_count()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
