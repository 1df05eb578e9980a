"""The console proxy (/ws/console/) against real QEMU guests on node1 (qemu tier).

Sockets go through ``portal.asgi.application`` (origin validator, session auth, the
consumer) with the real Redis channel layer; the consumer opens real TCP connections to
the guests' VNC servers, and what reaches a guest is read back from its serial log.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils import timezone

from compute.choices import Phase
from compute.models import ConsoleTicket, Image
from compute.services import console as console_services
from compute.services import vms as vm_services
from portal.asgi import application
from tenants import services as tenant_services
from tenants.models import AuditLog
from tests.compute.services.test_vm_lifecycle import wait_ready
from tests.compute.test_qemu_vms import node1, serial  # noqa: F401 - fixture
from tests.conftest import GUEST_BOOT_TIMEOUT, wait_for
from tests.monitoring.test_consumer import run
from tools.infra import read_state

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]

ORIGIN = "http://testserver"
SHIFT = 0xFFE1
RETURN = 0xFF0D
SHIFTED = set('~!@#$%^&*()_+{}|:"<>?') | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def session_cookie(user) -> tuple[str, str]:
    """A signed-in browser session: (cookie value, session key) — the same string."""
    client = Client()
    client.force_login(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    return key, key


def ticket_for(user, vm, session_key: str) -> str:
    return console_services.console_ticket_issue(actor=user, vm=vm, session_key=session_key).ticket


def socket(cookie: str | None, ticket: str | None, origin: str = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    protocols = ["binary"] + ([f"isotope-ticket.{ticket}"] if ticket else [])
    return WebsocketCommunicator(
        application, "/ws/console/", headers=headers, subprotocols=protocols
    )


class Rfb:
    """A minimal RFB 3.8 client over a WebsocketCommunicator (what noVNC does first)."""

    def __init__(self, ws: WebsocketCommunicator):
        self.ws = ws
        self.buffer = b""
        self.closed: dict | None = None

    async def read(self, n: int, timeout: float = 10) -> bytes:
        while len(self.buffer) < n:
            message = await self.ws.receive_output(timeout)
            if message["type"] == "websocket.close":
                self.closed = message
                raise ConnectionError(f"closed {message}")
            self.buffer += message.get("bytes") or b""
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def handshake(self) -> tuple[bytes, str]:
        version = await self.read(12)
        await self.ws.send_to(bytes_data=b"RFB 003.008\n")
        count = (await self.read(1))[0]
        types = await self.read(count)
        assert 1 in types, types  # None: VNC listens on loopback only, the proxy guards it
        await self.ws.send_to(bytes_data=b"\x01")
        assert await self.read(4) == b"\0\0\0\0"
        await self.ws.send_to(bytes_data=b"\x01")  # ClientInit: shared
        init = await self.read(24)
        name = await self.read(struct.unpack(">I", init[20:24])[0])
        return version, name.decode()

    async def key(self, keysym: int) -> None:
        for down in (1, 0):
            await self.ws.send_to(bytes_data=struct.pack(">BBxxI", 4, down, keysym))
            await asyncio.sleep(0.02)  # the guest's PS/2 buffer is small

    async def type(self, text: str) -> None:
        for ch in text:
            if ch == "\n":
                await self.key(RETURN)
                continue
            if ch in SHIFTED:
                await self.ws.send_to(bytes_data=struct.pack(">BBxxI", 4, 1, SHIFT))
            await self.key(ord(ch))
            if ch in SHIFTED:
                await self.ws.send_to(bytes_data=struct.pack(">BBxxI", 4, 0, SHIFT))

    async def pointer(self) -> None:
        await self.ws.send_to(bytes_data=struct.pack(">BBHH", 5, 1, 10, 10))


async def closed_with(ws: WebsocketCommunicator, timeout: float = 10) -> int:
    """The close code the server sends next (skipping relayed bytes); then the socket is
    gone (as a browser would), and the consumer has finished its clean-up."""
    while True:
        message = await ws.receive_output(timeout)
        if message["type"] == "websocket.close":
            await ws.disconnect()
            return message.get("code")


@pytest.fixture
def guest(demo, node1, celery_worker):  # noqa: F811 - fixture from test_qemu_vms
    """A running tiny guest of acme (256 MiB) whose shell is up on tty1."""
    image = read_state("image")
    if image.get("kernel_bzimage"):
        # The bzImage boots through the Linux boot protocol, which hands the kernel the
        # VGA text screen: the shell shows on the console (the ELF vmlinux draws nothing).
        Image.objects.filter(name="tiny").update(kernel_path=image["kernel_bzimage"])
    name = f"cs-{secrets.token_hex(3)}"
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
    )
    vm = wait_ready(vm, timeout=GUEST_BOOT_TIMEOUT)
    wait_for(lambda: f"{name}:/# " in serial(vm), 30, message="no shell prompt on ttyS0")
    return vm


def test_an_operators_session_relays_rfb_and_a_viewers_keys_never_reach_the_guest(
    demo, guest, caplog
):
    caplog.set_level(logging.DEBUG)
    bob_cookie, bob_key = session_cookie(demo.bob)
    carol_cookie, carol_key = session_cookie(demo.carol)
    bob_ticket = ticket_for(demo.bob, guest, bob_key)
    carol_ticket = ticket_for(demo.carol, guest, carol_key)
    assert not ConsoleTicket.objects.filter(digest__in=[bob_ticket, carol_ticket]).exists()
    viewer_marker = f"viewer-{secrets.token_hex(4)}"
    operator_marker = f"operator-{secrets.token_hex(4)}"

    async def scenario():
        carol_ws = socket(carol_cookie, carol_ticket)
        ok, protocol = await carol_ws.connect(timeout=10)
        assert ok and protocol == "binary"
        carol = Rfb(carol_ws)
        version, _ = await carol.handshake()
        assert version == b"RFB 003.008\n"
        await carol.type(f"echo {viewer_marker} > /dev/ttyS0\n")
        await carol.pointer()

        bob_ws = socket(bob_cookie, bob_ticket)
        ok, _ = await bob_ws.connect(timeout=10)
        assert ok
        bob = Rfb(bob_ws)
        version, name = await bob.handshake()
        assert version.startswith(b"RFB 003.008")
        await bob.type(f"echo {operator_marker} > /dev/ttyS0\n")
        await sync_to_async(wait_for)(lambda: operator_marker in serial(guest), 30)
        await carol_ws.disconnect()
        await bob_ws.disconnect()

    run(scenario)
    # Bob's line ran after Carol's would have: hers was dropped by the proxy.
    assert viewer_marker not in serial(guest)
    closes = wait_for(
        lambda: (
            list(AuditLog.objects.filter(action="vm.console.close").order_by("id"))
            if AuditLog.objects.filter(action="vm.console.close").count() == 2
            else None
        ),
        10,
    )
    by_user = {entry.actor_name: entry.detail for entry in closes}
    assert by_user["carol"]["viewOnly"] is True
    assert by_user["carol"]["inputDropped"] >= 2 * len(viewer_marker)
    assert by_user["bob"]["viewOnly"] is False and by_user["bob"]["inputDropped"] == 0
    assert by_user["bob"]["seconds"] >= 0 and by_user["bob"]["bytesToClient"] > 12
    opens = AuditLog.objects.filter(action="vm.console.open", target=f"vm/{guest.name}")
    assert sorted(opens.values_list("actor_name", flat=True)) == ["bob", "carol"]
    for ticket in (bob_ticket, carol_ticket):
        assert ticket not in caplog.text
        assert not AuditLog.objects.filter(detail__icontains=ticket).exists()


def test_tickets_are_refused_when_reused_expired_foreign_or_from_another_origin(demo, guest):
    bob_cookie, bob_key = session_cookie(demo.bob)
    alice_cookie, _ = session_cookie(demo.alice)
    dave_cookie, _ = session_cookie(demo.dave)
    reused = ticket_for(demo.bob, guest, bob_key)
    expired = ticket_for(demo.bob, guest, bob_key)
    ConsoleTicket.objects.filter(digest=console_services.ticket_digest(expired)).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    stolen_by_alice = ticket_for(demo.bob, guest, bob_key)
    stolen_by_dave = ticket_for(demo.bob, guest, bob_key)
    cross_site = ticket_for(demo.bob, guest, bob_key)
    anonymous = ticket_for(demo.bob, guest, bob_key)
    with pytest.raises(console_services.PermissionDenied):
        console_services.console_ticket_issue(actor=demo.dave, vm=guest, session_key="x")

    async def refused(cookie, ticket, origin=ORIGIN) -> int:
        ws = socket(cookie, ticket, origin)
        ok, _ = await ws.connect(timeout=10)
        assert ok
        return await closed_with(ws)

    async def scenario():
        first = socket(bob_cookie, reused)
        ok, _ = await first.connect(timeout=10)
        assert ok
        assert (await Rfb(first).read(12)) == b"RFB 003.008\n"
        assert await refused(bob_cookie, reused) == 4401  # single use
        await first.disconnect()
        assert await refused(bob_cookie, expired) == 4401
        assert await refused(alice_cookie, stolen_by_alice) == 4401  # another user
        assert await refused(dave_cookie, stolen_by_dave) == 4401  # another tenant's user
        assert await refused(None, anonymous) == 4401  # bound to bob's session
        assert await refused(bob_cookie, "not-a-ticket") == 4401
        evil = socket(bob_cookie, cross_site, origin="http://evil.example")
        ok, _ = await evil.connect(timeout=10)
        assert not ok  # refused at the handshake
        no_ticket = socket(bob_cookie, None)
        ok, _ = await no_ticket.connect(timeout=10)
        assert ok
        await no_ticket.send_to(bytes_data=b"RFB 003.008\n")
        assert await closed_with(no_ticket) == 4401

    run(scenario)
    # The cross-site ticket was never spent: the socket never reached the consumer's checks.
    assert ConsoleTicket.objects.get(digest=console_services.ticket_digest(cross_site)).used is None


def test_sessions_are_limited_and_close_when_access_is_revoked_or_the_vm_stops(
    demo, guest, settings
):
    settings.ISOTOPE_CONSOLE_SESSIONS_PER_USER = 2
    bob_cookie, bob_key = session_cookie(demo.bob)
    carol_cookie, carol_key = session_cookie(demo.carol)
    bob_tickets = [ticket_for(demo.bob, guest, bob_key) for _ in range(3)]
    carol_ticket = ticket_for(demo.carol, guest, carol_key)

    async def opened(cookie, ticket) -> WebsocketCommunicator:
        ws = socket(cookie, ticket)
        ok, _ = await ws.connect(timeout=10)
        assert ok
        await Rfb(ws).read(12)
        return ws

    async def scenario():
        bob1 = await opened(bob_cookie, bob_tickets[0])
        bob2 = await opened(bob_cookie, bob_tickets[1])
        third = socket(bob_cookie, bob_tickets[2])
        assert (await third.connect(timeout=10))[0]
        assert await closed_with(third) == 4409
        await bob2.disconnect()
        carol = await opened(carol_cookie, carol_ticket)

        await sync_to_async(tenant_services.membership_remove)(
            actor=demo.alice, tenant=demo.acme, user=demo.carol
        )
        assert await closed_with(carol) == 4403

        vm = await sync_to_async(vm_services.vm_action)(actor=demo.bob, vm=guest, action="stop")
        assert vm.phase == Phase.STOPPING
        assert await closed_with(bob1, timeout=30) == 4410

    run(scenario)
    closes = AuditLog.objects.filter(action="vm.console.close")
    reasons = sorted((e.actor_name, e.detail["reason"]) for e in closes)
    assert reasons == [("bob", "client"), ("bob", "vm-stopped"), ("carol", "access-lost")]


def test_a_session_without_input_closes_after_the_idle_timeout_and_input_keeps_it(
    demo, guest, settings
):
    settings.ISOTOPE_CONSOLE_IDLE_SECONDS = 3
    cookie, session_key = session_cookie(demo.bob)

    async def scenario():
        quiet = socket(cookie, await sync_to_async(ticket_for)(demo.bob, guest, session_key))
        busy = socket(cookie, await sync_to_async(ticket_for)(demo.bob, guest, session_key))
        for ws in (quiet, busy):
            connected, _ = await ws.connect(timeout=10)
            assert connected
        await Rfb(quiet).handshake()
        typist = Rfb(busy)
        await typist.handshake()
        started = asyncio.get_running_loop().time()
        # The busy session moves the pointer every second; the quiet one does nothing.
        closing = asyncio.ensure_future(closed_with(quiet, 15))
        while not closing.done():
            await typist.pointer()
            await asyncio.sleep(1)
        assert closing.result() == 4408
        # Not before the idle timeout; the upper bound only shows it is that timeout (the
        # check ticks every idle/4) and not some later one. Measured 3.0 s at load
        # average ~20; 12 s leaves room for an event loop starved on 2 busy cores.
        assert 3 <= asyncio.get_running_loop().time() - started < 12
        await typist.pointer()
        assert await busy.receive_nothing(1.5), "the session with input was closed too"
        await busy.disconnect()

    run(scenario)
    close = AuditLog.objects.filter(action="vm.console.close").order_by("time").first()
    assert close is not None and close.detail.get("reason") == "idle"
