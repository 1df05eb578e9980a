"""``/ws/console/``: the VNC proxy between noVNC in the page and a VM's VNC server.

Protocol: open the websocket with the subprotocols ``["binary",
"isotope-ticket.<ticket>"]`` (a ticket from ``POST .../virtualmachines/<name>/console/``
or the console page; never in the URL). Clients that cannot set subprotocols offer only
``binary`` and send the ticket as their first frame (text, ``{"ticket": "..."}``) within
5 s. After that every frame is binary RFB, relayed both ways unchanged, except that a
view-only session's input messages are dropped (``compute.rfb``).

The server closes with a code the page can act on:

====  ===========================================================  ===============
code  meaning                                                      page does
====  ===========================================================  ===============
4400  no ticket, or a client stream that cannot be parsed          shows it
4401  ticket invalid, expired, used, or another user's/session's   shows it
4403  not allowed (any more): membership changed or removed        shows it
4404  the VM is gone                                               shows it
4408  idle: no keyboard or mouse input for the idle timeout        shows it
4409  too many console sessions (per user per VM, or per VM)       shows it
4410  the VM is not running (stopped, deleted) or has no console   shows it
4502  the VNC server could not be reached (host busy)              reconnects
4503  the VNC server went away while the VM runs (migrated)        reconnects
====  ===========================================================  ===============

Origin: ``portal.websockets.SameOriginValidator`` (``portal.asgi``) refuses every
handshake whose Origin is not the page's own host and port (or one of
``CSRF_TRUSTED_ORIGINS``); the consumer checks it again before accepting, because a
console socket carries keyboard input to a VM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation

from compute.rfb import ClientStreamFilter, RfbProtocolError
from compute.services import console as console_services
from compute.texts import console as console_texts
from compute.texts import vms as vm_texts
from monitoring.groups import object_group, user_group
from portal.exceptions import NotFound, PermissionDenied
from portal.texts import localize
from portal.websockets import origin_allowed, reader_language

logger = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
CONNECT_TIMEOUT = 5
TICKET_WAIT = 5
RETRYABLE = frozenset({4502, 4503})


def _close_code(error: Exception) -> int:
    if isinstance(error, console_services.TicketRefused):
        return 4401
    if isinstance(error, console_services.ConsoleLimitReached):
        return 4409
    if isinstance(error, console_services.ConsoleUnavailable):
        return 4502 if error.retry else 4410
    if isinstance(error, NotFound):
        return 4404
    if isinstance(error, PermissionDenied):
        return 4403
    return 4400


class ConsoleConsumer(AsyncWebsocketConsumer):
    """One console session: ticket → checks → TCP to the VNC server → relay."""

    async def connect(self):
        self.grant = None
        self.session_id = secrets.token_hex(8)
        self.slot = False
        self.opened_at = None
        self.writer = None
        self.tasks: list[asyncio.Task] = []
        self.filter = None
        self.groups_joined: list[str] = []
        self.last_input = time.monotonic()
        self.bytes_in = self.bytes_out = self.dropped = 0
        self.close_reason = "client"
        self.closing = False
        self.finished = False
        user = self.scope.get("user")
        self.user_id = user.pk if user is not None and user.is_authenticated else None
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.language = settings.LANGUAGE_CODE
        if not origin_allowed(self.scope):
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        self.language = await database_sync_to_async(reader_language)(self.scope)
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=console_services.SUBPROTOCOL if "binary" in offered else None)
        ticket = console_services.ticket_from_subprotocols(offered)
        if ticket is not None:
            await self.start(ticket)
        else:
            self.tasks.append(asyncio.create_task(self.ticket_deadline()))

    async def ticket_deadline(self) -> None:
        await asyncio.sleep(TICKET_WAIT)
        if self.grant is None and not self.closing:
            await self.shut(4400, "no-ticket", console_texts.NO_TICKET)

    def redeem(self, ticket: str):
        """The ticket's grant; a refusal's message in the reader's language."""
        with translation.override(self.language):
            return console_services.console_ticket_redeem(
                ticket=ticket, user_id=self.user_id, session_key=self.session_key
            )

    async def start(self, ticket: str) -> None:
        """Redeem the ticket, join the VM's and user's streams, take a slot, connect."""
        try:
            grant = await database_sync_to_async(self.redeem)(ticket)
            self.grant = grant
            for group in (
                object_group(grant.tenant_slug, "vm", grant.vm_name),
                user_group(grant.user_id),
            ):
                await self.channel_layer.group_add(group, self.channel_name)
                self.groups_joined.append(group)
            await sync_to_async(console_services.console_slot_acquire, thread_sensitive=False)(
                grant=grant, session_id=self.session_id
            )
            self.slot = True
            host, port = await database_sync_to_async(console_services.console_endpoint)(
                vm_id=grant.vm_id
            )
        except Exception as error:  # noqa: BLE001 - every refusal becomes a close code
            code = _close_code(error)
            if code == 4400:
                logger.exception("console session could not start")
            await self.shut(code, "refused", getattr(error, "message", console_texts.REFUSED))
            return
        try:
            reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=READ_CHUNK), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as error:
            logger.warning(
                "console of %s: VNC %s:%s unreachable: %s", grant.vm_name, host, port, error
            )
            await self.shut(4502, "unreachable", console_texts.UNREACHABLE)
            return
        self.filter = ClientStreamFilter(view_only=grant.view_only)
        self.opened_at = time.monotonic()
        self.last_input = self.opened_at
        await database_sync_to_async(console_services.console_session_opened)(
            grant=grant, session_id=self.session_id, ip=self.client_ip
        )
        self.tasks.append(asyncio.create_task(self.pump(reader)))
        self.tasks.append(asyncio.create_task(self.watchdog()))

    @property
    def client_ip(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    # --- Relay ----------------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if self.grant is None:
            # Only a socket that offered no ticket subprotocol gets here: the first frame
            # must carry the ticket.
            ticket = None
            if text_data is not None:
                try:
                    ticket = json.loads(text_data).get("ticket")
                except (ValueError, AttributeError):
                    ticket = None
            await self.start(ticket if isinstance(ticket, str) else "")
            return
        if bytes_data is None or self.writer is None:
            return
        self.bytes_in += len(bytes_data)
        try:
            result = self.filter.feed(bytes_data)
        except RfbProtocolError as error:
            await self.shut(4400, "protocol", str(error))
            return
        if result.input_seen:
            self.last_input = time.monotonic()
        self.dropped += len(result.dropped)
        if result.forward:
            self.writer.write(result.forward)
            try:
                await self.writer.drain()  # back-pressure: the next frame waits for this one
            except (ConnectionError, OSError):
                await self.upstream_closed()

    async def pump(self, reader: asyncio.StreamReader) -> None:
        """VNC server → browser, one bounded read at a time; ``send`` waits while the
        browser's socket is full, so a slow client slows the reads, not our memory."""
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                self.bytes_out += len(data)
                await self.send(bytes_data=data)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return
        await self.upstream_closed()

    async def upstream_closed(self) -> None:
        """The VNC server hung up: the VM stopped (final) or moved (reconnect)."""
        if self.closing:
            return
        access = await database_sync_to_async(console_services.console_access)(
            user_id=self.grant.user_id, vm_id=self.grant.vm_id
        )
        if access == "none":
            await self.shut(4410, "vm-stopped", console_texts.VM_STOPPED)
        else:
            await self.shut(4503, "endpoint-closed", console_texts.MOVED)

    async def watchdog(self) -> None:
        """Renew the session's slot and enforce the idle timeout."""
        idle = console_services.idle_seconds()
        tick = max(0.5, min(console_services.LEASE_SECONDS / 3, idle / 4))
        renew = sync_to_async(console_services.console_slot_renew, thread_sensitive=False)
        try:
            while not self.closing:
                await asyncio.sleep(tick)
                if time.monotonic() - self.last_input >= idle:
                    await self.shut(4408, "idle", console_texts.IDLE)
                    return
                try:
                    await renew(grant=self.grant, session_id=self.session_id)
                except Exception:  # noqa: BLE001 - Redis hiccup: the lease has slack
                    logger.warning("could not renew console slot", exc_info=True)
        except asyncio.CancelledError:
            return

    # --- Closing --------------------------------------------------------------------
    async def shut(self, code: int, reason: str, message: str = "") -> None:
        """Close with ``code`` and ``message`` (English, as made from its format) in the
        reader's language; a close frame's reason is at most 123 bytes of UTF-8."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        with translation.override(self.language):
            shown = localize(message)
        shown = shown.encode()[:123].decode(errors="ignore")
        await self.close(code=code, reason=shown or None)
        await self.finish()

    async def disconnect(self, code):
        self.closing = True
        await self.finish()

    async def finish(self) -> None:
        """Release everything the session holds and audit its end (once)."""
        if self.finished:
            return
        self.finished = True
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        if self.writer is not None:
            self.writer.close()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if self.grant is None:
            return
        if self.slot:
            try:
                await sync_to_async(console_services.console_slot_release, thread_sensitive=False)(
                    grant=self.grant, session_id=self.session_id
                )
            except Exception:  # noqa: BLE001 - the lease expires by itself
                logger.warning("could not release console slot", exc_info=True)
        if self.opened_at is not None:
            await database_sync_to_async(console_services.console_session_closed)(
                grant=self.grant,
                session_id=self.session_id,
                seconds=time.monotonic() - self.opened_at,
                reason=self.close_reason,
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
                dropped=self.dropped,
                ip=self.client_ip,
            )

    # --- Channel-layer messages (monitoring.live) -------------------------------------
    async def live_message(self, message: dict) -> None:
        """A VM state published by compute: close when it no longer runs."""
        body = message.get("message") or {}
        data = body.get("data") or {}
        if self.grant is None or body.get("type") != "resource":
            return
        if data.get("kind") != "vm" or data.get("name") != self.grant.vm_name:
            return
        if data.get("deleted") or not console_services.vm_state_keeps_console(data.get("state")):
            phase = (data.get("state") or {}).get("phase") or "deleted"
            await self.shut(4410, "vm-stopped", vm_texts.VM_IS.get(phase, console_texts.VM_DELETED))

    async def live_control(self, message: dict) -> None:
        """Access changed (re-check now) or the session signed out (close)."""
        if self.grant is None:
            return
        if message.get("action") == "close":
            if message.get("all") or (
                message.get("session_key") and message["session_key"] == self.session_key
            ):
                await self.shut(4401, "signed-out", console_texts.SIGNED_OUT)
            return
        tenant = message.get("tenant") or ""
        if tenant and tenant != self.grant.tenant_slug:
            return
        access = await database_sync_to_async(console_services.console_access)(
            user_id=self.grant.user_id, vm_id=self.grant.vm_id
        )
        if access == "none":
            await self.shut(4403, "access-lost", console_texts.ACCESS_LOST)
        elif access == "view" and self.filter is not None:
            self.filter.view_only = True
