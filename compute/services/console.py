"""VM console: tickets, access checks, the VNC endpoint, session limits and audit.

The browser never learns where a VM's VNC server is. It asks for a *ticket*
(:func:`console_ticket_issue`): 32 random bytes, URL-safe, valid for at most 30 s, bound
to the user, the VM and the browser session, stored only as a SHA-256 digest and never
logged. It presents the ticket once, as the websocket subprotocol
``isotope-ticket.<ticket>`` (next to ``binary``), to ``/ws/console/``
(``compute.consumers.ConsoleConsumer``), which redeems it (:func:`console_ticket_redeem`,
one atomic ``UPDATE ... WHERE used IS NULL``), reserves a session slot
(:func:`console_slot_acquire`) and relays bytes to the endpoint read server-side from
the live domain (:func:`console_endpoint`).

Viewers get view-only sessions (their input is dropped by ``compute.rfb``); operators
and admins get keyboard and mouse. Access is re-checked whenever the user's membership
changes (:func:`console_access`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext

from compute.backends import BackendError, backend_for_host
from compute.choices import Phase
from compute.models import ConsoleTicket, VirtualMachine
from compute.texts import console as console_texts
from portal.exceptions import Conflict, NotFound, PermissionDenied
from tenants import selectors as tenant_selectors
from tenants.choices import AuditOutcome
from tenants.services import audit_record

logger = logging.getLogger(__name__)

WEBSOCKET_PATH = "/ws/console/"
SUBPROTOCOL = "binary"
TICKET_PREFIX = "isotope-ticket."
MAX_TICKET_SECONDS = 30
# Phases whose console stays open: a paused guest shows its frozen screen and a
# migrating guest keeps its VNC server until the target takes over.
OPEN_PHASES = frozenset({Phase.RUNNING, Phase.PAUSED, Phase.MIGRATING})
# A session slot lives this long unless the proxy renews it (every LEASE_SECONDS / 3),
# so a crashed web process frees its slots within a minute.
LEASE_SECONDS = 60
SERIAL_TAIL_BYTES = 64 * 1024
# What a terminal would act on rather than print: escape sequences (CSI such as the
# shell's cursor query "ESC [6n" or colours, OSC titles, two-byte escapes) and the other
# C0 controls but tab and newline. Backspaces are applied before, carriage returns
# dropped.
_TERMINAL_CONTROLS = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, ended by BEL or ST
    r"|\x1b[ -/]*[0-~]"  # other escapes (charset selection, keypad modes, ...)
    r"|[\x00-\x08\x0b-\x1f\x7f]"
)
_BACKSPACED = re.compile(r"[^\x08\n]\x08")


class TicketRefused(PermissionDenied):
    """The ticket is unknown, expired, used, or presented by someone else."""


class ConsoleUnavailable(Conflict):
    """The VM has no console right now. ``retry``: it may come back by itself (the VNC
    server moved with a migration or the host did not answer)."""

    def __init__(self, message: str, *, retry: bool = False):
        super().__init__(message, errors={"status.phase": [message]})
        self.retry = retry


class ConsoleLimitReached(Conflict):
    """Too many open console sessions for this user or this VM."""


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    expires: datetime
    view_only: bool
    websocket_path: str = WEBSOCKET_PATH


@dataclass(frozen=True)
class ConsoleGrant:
    """What a redeemed ticket allows: whose session, which VM, with or without input."""

    user_id: int
    username: str
    vm_id: int
    vm_uid: str
    vm_name: str
    tenant_slug: str
    view_only: bool


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def ticket_seconds() -> int:
    """Ticket lifetime: ``ISOTOPE_CONSOLE_TICKET_SECONDS``, never more than 30 s."""
    return max(1, min(_setting("ISOTOPE_CONSOLE_TICKET_SECONDS", 30), MAX_TICKET_SECONDS))


def idle_seconds() -> int:
    """Seconds without user input after which a session closes (default 15 min)."""
    return _setting("ISOTOPE_CONSOLE_IDLE_SECONDS", 900)


def ticket_digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def ticket_from_subprotocols(subprotocols: list[str]) -> str | None:
    """The ticket offered as ``isotope-ticket.<ticket>``, if any."""
    for protocol in subprotocols or []:
        if protocol.startswith(TICKET_PREFIX):
            return protocol[len(TICKET_PREFIX) :]
    return None


# --- Availability and access --------------------------------------------------------------
def console_unavailable_reason(vm: VirtualMachine) -> str:
    """Why ``vm`` has no console now ("" when it has one). For pages and the API."""
    if vm.host is None:
        return f"{vm.name} is not placed on a host yet."
    if not vm.host.can("console"):
        # The host's name is for platform staff only: say what, not where.
        return f"{vm.name}'s host has no graphical console (libvirt test driver)."
    if vm.phase not in OPEN_PHASES:
        return f"{vm.name} is {vm.phase}: the console is available while it runs."
    return ""


def console_view_only(user, vm: VirtualMachine) -> bool:
    """True unless the user's role allows keyboard and mouse (``vm.console.input``)."""
    return not tenant_selectors.can(user, vm.tenant, "vm.console.input")


def console_ticket_issue(*, actor, vm: VirtualMachine, session_key: str = "") -> IssuedTicket:
    """Issue a single-use ticket for ``actor`` to open ``vm``'s console.

    ``session_key`` binds it to the browser session asking (the websocket must come from
    the same session); API-token clients have none and present it as a bearer ticket.
    Raises ``PermissionDenied`` without ``vm.console`` and ``ConsoleUnavailable`` (409)
    when the VM is not running or its host has no console. The ticket is returned once
    and never stored, logged or audited.
    """
    if not tenant_selectors.can(actor, vm.tenant, "vm.console"):
        raise PermissionDenied(
            gettext("Your role does not allow vm.console in %(tenant)s.")
            % {"tenant": vm.tenant.slug}
        )
    reason = console_unavailable_reason(vm)
    if reason:
        raise ConsoleUnavailable(reason)
    now = timezone.now()
    ticket = secrets.token_urlsafe(32)
    issued = ConsoleTicket.objects.create(
        digest=ticket_digest(ticket),
        user=actor,
        vm=vm,
        session_key=session_key or "",
        view_only=console_view_only(actor, vm),
        expires=now + timedelta(seconds=ticket_seconds()),
    )
    # Spent and expired tickets are useless: keep the table small as we go.
    ConsoleTicket.objects.filter(user=actor, expires__lt=now - timedelta(minutes=5)).delete()
    return IssuedTicket(ticket=ticket, expires=issued.expires, view_only=issued.view_only)


def console_ticket_redeem(
    *, ticket: str, user_id: int | None, session_key: str | None
) -> ConsoleGrant:
    """Spend ``ticket`` (atomically: a second use finds it used) and check who spends it.

    ``user_id``/``session_key`` are the websocket's session. A ticket issued to a
    browser session must come from that session; any ticket must come from its own user
    (or from a socket without a session, for API-token clients). Access to the VM is
    re-checked now, not trusted from issue time. Raises ``TicketRefused``,
    ``PermissionDenied``, ``NotFound`` or ``ConsoleUnavailable``.
    """
    if not ticket or len(ticket) > 128:
        raise TicketRefused(console_texts.NO_VALID_TICKET)
    digest = ticket_digest(ticket)
    now = timezone.now()
    spent = ConsoleTicket.objects.filter(digest=digest, used__isnull=True, expires__gt=now).update(
        used=now
    )
    if spent != 1:
        raise TicketRefused(console_texts.TICKET_INVALID)
    issued = ConsoleTicket.objects.select_related("user", "vm__tenant", "vm__host").get(
        digest=digest
    )
    if issued.session_key and (session_key != issued.session_key or user_id != issued.user_id):
        raise TicketRefused(console_texts.TICKET_OTHER_SESSION)
    if user_id is not None and user_id != issued.user_id:
        raise TicketRefused(console_texts.TICKET_OTHER_USER)
    user, vm = issued.user, issued.vm
    if not user.is_active or not tenant_selectors.can(user, vm.tenant, "vm.console"):
        audit_record(
            actor=user,
            action="vm.console.open",
            tenant=vm.tenant,
            target=f"vm/{vm.name}",
            outcome=AuditOutcome.DENIED,
        )
        raise PermissionDenied(gettext("You may no longer open this console."))
    reason = console_unavailable_reason(vm)
    if reason:
        raise ConsoleUnavailable(reason, retry=vm.phase == Phase.MIGRATING)
    return ConsoleGrant(
        user_id=user.pk,
        username=user.get_username(),
        vm_id=vm.pk,
        vm_uid=str(vm.uid),
        vm_name=vm.name,
        tenant_slug=vm.tenant.slug,
        view_only=issued.view_only or console_view_only(user, vm),
    )


def console_access(*, user_id: int, vm_id: int) -> str:
    """The user's console access to the VM now: ``input``, ``view`` or ``none`` (no
    longer a member, deactivated, VM gone or not running)."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    vm = VirtualMachine.objects.select_related("tenant", "host").filter(pk=vm_id).first()
    if user is None or vm is None or not tenant_selectors.can(user, vm.tenant, "vm.console"):
        return "none"
    if vm.phase not in OPEN_PHASES:
        return "none"
    return "view" if console_view_only(user, vm) else "input"


def console_endpoint(*, vm_id: int) -> tuple[str, int]:
    """``(host, port)`` of the VM's VNC server, read from the live domain on the VM's
    current host (never from the client). Raises ``ConsoleUnavailable`` (``retry`` when
    the host did not answer or the domain is between hosts)."""
    vm = VirtualMachine.objects.select_related("tenant", "host").filter(pk=vm_id).first()
    if vm is None:
        raise NotFound(gettext("The virtual machine is gone."))
    reason = console_unavailable_reason(vm)
    if reason:
        raise ConsoleUnavailable(reason, retry=vm.phase == Phase.MIGRATING)
    try:
        endpoint = backend_for_host(vm.host).console_endpoint(vm.domain_name)
    except BackendError as error:
        logger.warning("console endpoint of %s: %s", vm, error)
        raise ConsoleUnavailable("The VM's host did not answer.", retry=True) from None
    if endpoint is None:
        raise ConsoleUnavailable(f"{vm.name} has no VNC server right now.", retry=True)
    return endpoint


def vm_state_keeps_console(state: dict | None) -> bool:
    """Whether a published VM state (``compute.services.vms.vm_state``) keeps an open
    console open: the VM still exists and is running, paused or migrating."""
    return bool(state) and state.get("phase") in OPEN_PHASES


# --- Session slots (Redis) ------------------------------------------------------------------
_ACQUIRE = """
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1]) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[i], ARGV[6])
end
return 0
"""

_client: redis.Redis | None = None
_client_url: str | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client, _client_url
    with _lock:
        if _client is None or _client_url != settings.REDIS_URL:
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
            _client_url = settings.REDIS_URL
        return _client


def _slot_keys(vm_uid: str, user_id: int) -> list[str]:
    return [f"isotope:console:user:{user_id}:{vm_uid}", f"isotope:console:vm:{vm_uid}"]


def console_slot_acquire(*, grant: ConsoleGrant, session_id: str) -> None:
    """Take one of the user's sessions on the VM (``ISOTOPE_CONSOLE_SESSIONS_PER_USER``,
    default 2) and one of the VM's (``ISOTOPE_CONSOLE_SESSIONS_PER_VM``, default 8),
    atomically, as a lease of ``LEASE_SECONDS`` renewed by :func:`console_slot_renew`.
    Raises ``ConsoleLimitReached``."""
    now = time.time()
    outcome = _redis().eval(
        _ACQUIRE,
        2,
        *_slot_keys(grant.vm_uid, grant.user_id),
        now,
        now + LEASE_SECONDS,
        session_id,
        _setting("ISOTOPE_CONSOLE_SESSIONS_PER_USER", 2),
        _setting("ISOTOPE_CONSOLE_SESSIONS_PER_VM", 8),
        LEASE_SECONDS * 2,
    )
    if outcome == 1:
        raise ConsoleLimitReached(
            "You have the maximum number of console sessions open on this VM; close one."
        )
    if outcome == 2:
        raise ConsoleLimitReached("This VM has the maximum number of console sessions open.")


def console_slot_renew(*, grant: ConsoleGrant, session_id: str) -> None:
    """Extend the session's lease (called periodically while it is open)."""
    pipe = _redis().pipeline(transaction=False)
    for key in _slot_keys(grant.vm_uid, grant.user_id):
        pipe.zadd(key, {session_id: time.time() + LEASE_SECONDS}, xx=True)
        pipe.expire(key, LEASE_SECONDS * 2)
    pipe.execute()


def console_slot_release(*, grant: ConsoleGrant, session_id: str) -> None:
    """Give the session's slot back (on close)."""
    pipe = _redis().pipeline(transaction=False)
    for key in _slot_keys(grant.vm_uid, grant.user_id):
        pipe.zrem(key, session_id)
    pipe.execute()


# --- Audit --------------------------------------------------------------------------------
def _audit(grant: ConsoleGrant, action: str, detail: dict, ip: str | None) -> None:
    from tenants.models import Tenant

    user = get_user_model().objects.filter(pk=grant.user_id).first()
    audit_record(
        actor=user or grant.username,
        action=action,
        tenant=Tenant.objects.filter(slug=grant.tenant_slug).first(),
        target=f"vm/{grant.vm_name}",
        detail=detail,
        ip=ip,
    )


def console_session_opened(*, grant: ConsoleGrant, session_id: str, ip: str | None) -> None:
    """Audit ``vm.console.open`` (session id and mode; never the ticket)."""
    _audit(grant, "vm.console.open", {"session": session_id, "viewOnly": grant.view_only}, ip)


def console_session_closed(
    *,
    grant: ConsoleGrant,
    session_id: str,
    seconds: float,
    reason: str,
    bytes_in: int,
    bytes_out: int,
    dropped: int,
    ip: str | None,
) -> None:
    """Audit ``vm.console.close`` with the duration, why it closed and what went through."""
    _audit(
        grant,
        "vm.console.close",
        {
            "session": session_id,
            "seconds": round(seconds, 1),
            "reason": reason,
            "bytesFromClient": bytes_in,
            "bytesToClient": bytes_out,
            "inputDropped": dropped,
            "viewOnly": grant.view_only,
        },
        ip,
    )


# --- Serial log -----------------------------------------------------------------------------
def console_serial_tail(*, vm: VirtualMachine, max_bytes: int = SERIAL_TAIL_BYTES) -> str:
    """The last ``max_bytes`` of the VM's serial console log (read-only), or "" when its
    backend keeps none. The caller has checked ``vm.console``."""
    if vm.host is None or not vm.host.can("serial_log"):
        return ""
    path = backend_for_host(vm.host).serial_log(vm.domain_name)
    if not path:
        return ""
    try:
        with Path(path).open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            data = log.read()
    except OSError:
        return ""
    if len(data) == max_bytes and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return terminal_text(data.decode("utf-8", errors="replace"))


def terminal_text(text: str) -> str:
    """What a terminal shows of ``text``, as plain text: escape sequences and control
    characters removed, backspaces applied."""
    text = text.replace("\r\n", "\n").replace("\r", "")
    while "\x08" in text:
        applied = _BACKSPACED.sub("", text)
        if applied == text:
            break
        text = applied
    return _TERMINAL_CONTROLS.sub("", text)
