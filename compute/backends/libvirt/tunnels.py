"""VXLAN devices that join one network's bridges on several hosts into one L2 segment.

libvirt makes bridges but no tunnels, so the tunnel of a host is made with the kernel's
own tools (iproute2's ``ip`` and ``bridge``, run with argument lists) by the process
that calls this: it must run on the host whose bridge it joins (a worker on the host;
``TunnelNotHere`` otherwise). Each host's device listens on its own tunnel address and
UDP port, learns no MAC addresses (a learned peer would be recorded with this device's
own port, which is wrong when two hosts share an address, as node1 and node2 do here)
and sends frames it cannot place to every peer through one all-zero fdb entry per peer.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

from compute.backends.base import TunnelSpec

logger = logging.getLogger(__name__)

ANY_MAC = "00:00:00:00:00:00"
TIMEOUT_SECONDS = 10


class TunnelNotHere(Exception):
    """The bridge to join is not on the machine this process runs on."""


class TunnelFailed(Exception):
    """iproute2 refused; the message is its own words."""


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed programs, argument lists
            list(argv), capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TunnelFailed(f"{' '.join(argv)}: {error}") from error
    if done.returncode != 0:
        raise TunnelFailed(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _vxlan(name: str) -> dict | None:
    """The device's VXLAN settings (id, local, port, learning), or None when absent."""
    if not exists(name):
        return None
    found = json.loads(_run("ip", "-d", "-j", "link", "show", "dev", name) or "[]")
    info = (found[0].get("linkinfo") or {}) if found else {}
    if info.get("info_kind") != "vxlan":
        raise TunnelFailed(f"{name} exists and is not a VXLAN device")
    return info.get("info_data") or {}


def _peers(name: str) -> set[tuple[str, int]]:
    entries = json.loads(_run("bridge", "-j", "fdb", "show", "dev", name) or "[]")
    return {
        (entry["dst"], int(entry.get("port") or 4789))
        for entry in entries
        if entry.get("mac") == ANY_MAC and entry.get("dst")
    }


def ensure(spec: TunnelSpec) -> None:
    """Make ``spec``'s device as it says (see the module's docstring); idempotent: a
    device with other settings is made again, the peers are set to exactly
    ``spec.peers``."""
    if not exists(spec.bridge):
        raise TunnelNotHere(spec.bridge)
    current = _vxlan(spec.name)
    wanted = {"id": spec.vni, "local": spec.local, "port": spec.port, "learning": False}
    if current is not None and any(current.get(k) != v for k, v in wanted.items()):
        logger.info("tunnel %s has other settings (%s): made again", spec.name, current)
        _run("ip", "link", "del", "dev", spec.name)
        current = None
    if current is None:
        _run(
            "ip", "link", "add", spec.name, "type", "vxlan",
            "id", str(spec.vni), "local", spec.local, "dstport", str(spec.port), "nolearning",
        )  # fmt: skip
    _run("ip", "link", "set", "dev", spec.name, "master", spec.bridge, "up")
    held = _peers(spec.name)
    wanted_peers = set(spec.peers)
    for address, port in sorted(held - wanted_peers):
        _run(
            "bridge", "fdb", "del", ANY_MAC, "dev", spec.name,
            "dst", address, "port", str(port),
        )  # fmt: skip
    for address, port in sorted(wanted_peers - held):
        _run(
            "bridge", "fdb", "append", ANY_MAC, "dev", spec.name,
            "dst", address, "port", str(port),
        )  # fmt: skip


def delete(name: str) -> bool:
    """Remove the device; False when it was not there."""
    if _vxlan(name) is None:
        return False
    _run("ip", "link", "del", "dev", name)
    return True


def names(prefix: str) -> list[str]:
    """The VXLAN devices on this machine whose names start with ``prefix``."""
    found = json.loads(_run("ip", "-j", "link", "show", "type", "vxlan") or "[]")
    return sorted(d["ifname"] for d in found if d.get("ifname", "").startswith(prefix))
