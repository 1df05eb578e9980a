"""Host services: register hosts, validate their libvirt URIs, read their facts.

A host's URI is typed by platform staff, but it is opened by the portal's own processes,
and some libvirt transports run programs on the portal host: ``+ext`` runs
``?command=``, ``+ssh`` runs ``ssh`` (``?command=`` picks the binary, ``?netcat=`` the
remote command, and a host or user name starting with ``-`` becomes an ``ssh`` option),
and ``?socket=``, ``?keyfile=``, ``?pkipath=`` name local files. :func:`host_uri_check`
allows only what a hypervisor host needs and says why anything else is refused.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.backends import BackendError, backend_for_host
from compute.backends.libvirt.backend import LibvirtBackend
from compute.choices import VirtType
from compute.models import Host
from compute.texts import hosts as host_texts
from portal.exceptions import ValidationError
from tenants.choices import AuditOutcome
from tenants.services import audit_record

logger = logging.getLogger(__name__)

DRIVERS = frozenset({"qemu", "test"})
# "" and "unix": the local daemon's socket; tcp/tls: a remote daemon; ssh/libssh*: a
# tunnel (the ssh binary, or libssh in process) to a remote host's socket.
TRANSPORTS = frozenset({"", "unix", "tcp", "tls", "ssh", "libssh", "libssh2"})
REMOTE = frozenset({"tcp", "tls", "ssh", "libssh", "libssh2"})
# Parameters with a fixed set of values (None: any value of safe characters).
PARAMETERS: dict[str, frozenset[str] | None] = {
    "no_verify": frozenset({"0", "1"}),
    "no_tty": frozenset({"0", "1"}),
    "mode": frozenset({"auto", "legacy", "direct"}),
    "proxy": frozenset({"auto", "netcat", "native"}),
    "known_hosts_verify": frozenset({"normal", "auto", "ignore"}),
    "sshauth": None,
    "tls_priority": None,
    "name": None,
}
# Parameters that run a program, and why each is refused.
COMMAND_PARAMETERS = {
    "command": host_texts.URI_COMMAND,
    "netcat": host_texts.URI_NETCAT,
}
FILE_PARAMETERS = frozenset({"keyfile", "known_hosts", "pkipath"})
# Matched with fullmatch: "$" would also accept a value ending in a newline (%0A).
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:+!%/=-]{1,200}")
HOST_NAME = re.compile(r"(?!-)[a-z0-9.-]{1,253}")
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _refuse(message: str) -> ValidationError:
    return ValidationError(host_texts.URI_REFUSED % {"problem": message}, errors={"uri": [message]})


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_uri_check(uri: str) -> str:
    """``uri`` (stripped) when the portal may open it; ``ValidationError`` (field
    ``uri``) saying why not otherwise.

    Allowed: drivers ``qemu`` and ``test``; transports none/``unix`` (local daemon),
    ``tcp``, ``tls``, ``ssh``, ``libssh``, ``libssh2``; a host and user name that cannot
    be read as options; ``?socket=`` only from ``ISOTOPE_LIBVIRT_SOCKETS``; a few
    parameters with harmless values. Refused: ``+ext`` and every other transport,
    ``?command=``, ``?netcat=``, parameters naming files on the portal host (configure
    ssh and TLS there instead), and anything unknown.
    """
    uri = (uri or "").strip()
    if not uri or len(uri) > 255:
        raise _refuse(host_texts.URI_TOO_LONG)
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise _refuse(host_texts.URI_INVALID) from None
    driver, _, transport = parts.scheme.lower().partition("+")
    if driver not in DRIVERS:
        raise _refuse(host_texts.URI_DRIVER % {"driver": repr(driver)})
    if transport == "ext":
        raise _refuse(host_texts.URI_EXT)
    if transport not in TRANSPORTS:
        raise _refuse(host_texts.URI_TRANSPORT % {"transport": repr(transport)})
    if parts.fragment:
        raise _refuse(host_texts.URI_FRAGMENT)
    host = parts.hostname or ""
    if transport in REMOTE:
        if not host or not (_is_address(host) or HOST_NAME.fullmatch(host)):
            raise _refuse(host_texts.URI_REMOTE_HOST)
        if parts.username is not None and not USER_NAME.fullmatch(parts.username):
            raise _refuse(host_texts.URI_USER)
        if parts.password is not None:
            raise _refuse(host_texts.URI_PASSWORD)
    elif parts.netloc:
        raise _refuse(host_texts.URI_NAME_TRANSPORT)
    if driver == "test" and transport:
        raise _refuse(host_texts.URI_TEST_LOCAL)
    if port is not None and not 0 < port < 65536:
        raise _refuse(host_texts.URI_PORT)
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _refuse(host_texts.URI_PARAMETERS) from None
    sockets = set(settings.ISOTOPE_LIBVIRT_SOCKETS)
    for name, value in query:
        if name in COMMAND_PARAMETERS:
            raise _refuse(COMMAND_PARAMETERS[name])
        if name in FILE_PARAMETERS:
            raise _refuse(host_texts.URI_FILE % {"parameter": name})
        if name == "socket":
            if value not in sockets:
                raise _refuse(host_texts.URI_SOCKET % {"sockets": ", ".join(sorted(sockets))})
            continue
        if name not in PARAMETERS:
            raise _refuse(host_texts.URI_UNKNOWN % {"parameter": name})
        allowed = PARAMETERS[name]
        if (allowed is not None and value not in allowed) or not SAFE_VALUE.fullmatch(value):
            raise _refuse(host_texts.URI_VALUE % {"parameter": name, "value": value[:40]})
    return uri


def host_check(host: Host, *, actor=None) -> Host:
    """Read capacity and capabilities from the host, make sure its volume pool exists;
    record reachability. A URI that :func:`host_uri_check` refuses is never opened: the
    host is recorded unreachable. Asked by ``actor`` (staff): audited, an unreachable
    host as failed with the reason."""
    try:
        host_uri_check(host.uri)
    except ValidationError as error:
        Host.objects.filter(pk=host.pk).update(reachable=False, message=error.message[:500])
        host.reachable, host.message = False, error.message[:500]
        _check_failed(host, actor)
        return host
    backend = backend_for_host(host)
    try:
        facts = backend.facts()
    except BackendError as error:
        Host.objects.filter(pk=host.pk).update(reachable=False, message=str(error)[:500])
        host.reachable, host.message = False, str(error)[:500]
        _check_failed(host, actor)
        return host
    virt = facts.virt_type
    if isinstance(backend, LibvirtBackend) and not backend.is_test:
        virt = host.virt_type if host.virt_type != VirtType.AUTO else _probed_virt_type()
    capabilities, storage_gib, note = dict(facts.capabilities), 0, ""
    if capabilities.get("volumes"):
        # The host's volume pool: made here when missing (a dir pool at its path).
        try:
            storage_gib = backend.storage_pool(host.volume_path).capacity // 1024**3
        except BackendError as error:
            capabilities["volumes"] = False
            note = host_texts.NO_VOLUME_STORAGE % {"error": error}
    Host.objects.filter(pk=host.pk).update(
        cpus=facts.cpus,
        memory_mib=facts.memory_mib,
        capabilities=capabilities,
        storage_gib=storage_gib,
        effective_virt_type=virt,
        reachable=True,
        last_seen=timezone.now(),
        message=note[:500],
    )
    host.refresh_from_db()
    if actor is not None:
        audit_record(actor=actor, action="host.check", target=f"host/{host.name}")
    return host


def _check_failed(host: Host, actor) -> None:
    """Audit a check staff asked for that found the host unreachable."""
    if actor is None:
        return
    audit_record(
        actor=actor,
        action="host.check",
        target=f"host/{host.name}",
        outcome=AuditOutcome.FAILED,
        detail={"error": host.message},
    )


def _probed_virt_type() -> str:
    """KVM only where the local infrastructure's probe guest really booted under it."""
    try:
        from tools.infra import read_state

        return read_state("libvirt").get("virt_type") or VirtType.QEMU
    except Exception:  # noqa: BLE001 - no infra state on a production host: be safe
        return VirtType.QEMU


@transaction.atomic
def host_register(*, actor, name: str, uri: str, **fields) -> Host:
    """Add a host (or update its URI) and read its facts. ``ValidationError`` for a URI
    :func:`host_uri_check` refuses."""
    uri = host_uri_check(uri)
    host, _ = Host.objects.update_or_create(name=name, defaults={"uri": uri, **fields})
    audit_record(actor=actor, action="host.register", target=f"host/{name}", detail={"uri": uri})
    transaction.on_commit(lambda: host_check(host))
    return host
