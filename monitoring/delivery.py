"""HTTP transport of webhook deliveries, safe against server-side request forgery.

A tenant chooses the URL, so the portal must never be made to call its own network:
loopback, private, link-local and other non-global addresses are refused unless
``ISOTOPE_WEBHOOK_ALLOW_PRIVATE`` (default: on in development only).

Checking a name and then letting an HTTP library resolve it again is not enough: a DNS
server that answers a public address to the check and ``127.0.0.1`` to the connection
(DNS rebinding) would get through. So a name is resolved once per attempt, every
address is checked, and the connection goes to those very addresses
(:class:`PinnedHTTPConnection`), while the ``Host`` header, TLS SNI and the
certificate check still use the URL's host name. Redirects are never followed and no
environment proxy is used.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

from django.conf import settings

READ_LIMIT = 65536


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: the HTTP status (None: no answer) and what went wrong."""

    status_code: int | None
    error: str
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def private_allowed() -> bool:
    return bool(getattr(settings, "ISOTOPE_WEBHOOK_ALLOW_PRIVATE", settings.DEBUG))


def resolve(
    host: str, port: int | None, *, allow_private: bool | None = None, allowed_networks=()
) -> tuple[list[str], str]:
    """The addresses ``host`` resolves to now, and why they may not be contacted
    ("" when they may; any non-global address refuses the whole name).

    ``allow_private`` defaults to the webhooks' setting; addresses inside one of
    ``allowed_networks`` (``ipaddress`` networks) pass anyway. Image imports use the
    same check with their own allow-list (``compute.imagefiles``)."""
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return [], f"{host} does not resolve."
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not (private_allowed() if allow_private is None else allow_private):
        for raw in addresses:
            address = ipaddress.ip_address(raw.split("%")[0])
            if not address.is_global and not any(address in net for net in allowed_networks):
                return addresses, f"{host} resolves to a non-public address ({address})."
    return addresses, ""


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``addresses`` (already checked), tried in order, instead of
    whatever the host name resolves to when connecting."""

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def _open_socket(self) -> socket.socket:
        error: OSError = OSError(f"{self.host} has no address")
        for address in self.addresses:
            try:
                return socket.create_connection((address, self.port), self.timeout)
            except OSError as failed:
                error = failed
        raise error

    def connect(self) -> None:
        self.sock = self._open_socket()


class PinnedHTTPSConnection(PinnedHTTPConnection):
    """The same over TLS: SNI and certificate verification name the URL's host."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float):
        super().__init__(host, port, addresses=addresses, timeout=timeout)
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(self._open_socket(), server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Outcome:
    """POST ``body`` to ``url`` at the addresses its host resolves to right now, if they
    may receive webhooks. Never raises for network trouble: the outcome says it."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (http.client.HTTPS_PORT if https else http.client.HTTP_PORT)
    addresses, refusal = resolve(host, port)
    if refusal:
        # A name that does not resolve may come back; a forbidden address will not.
        return Outcome(None, refusal, permanent=bool(addresses))
    connection_class = PinnedHTTPSConnection if https else PinnedHTTPConnection
    connection = connection_class(host, port, addresses=addresses, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(READ_LIMIT)
    except (OSError, http.client.HTTPException) as error:
        return Outcome(None, f"{type(error).__name__}: {error}"[:500])
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return Outcome(response.status, "")
    note = " (redirects are not followed)" if 300 <= response.status < 400 else ""
    return Outcome(response.status, f"HTTP {response.status} {response.reason}{note}"[:500])
