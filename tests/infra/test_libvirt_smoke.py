"""Smoke tests of the local libvirt infrastructure (tools/infra/libvirt.py, image.py).

They need both nodes up and the tiny guest image built::

    python3 -m tools.infra libvirt up && python3 -m tools.infra image up

Without them the tests skip with the recorded reason, or fail when ``CI`` or
``ISOTOPE_REQUIRE_INFRA=1`` is set. Every domain they create is named ``isotope-smoke-*``
and removed again (``python3 -m tools.infra libvirt down`` removes leftovers too).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from compute.backends.libvirt.xml import host_tsc_khz
from tests.conftest import GUEST_BOOT_TIMEOUT
from tools.infra import infra_required
from tools.infra.image import type_keys
from tools.infra.libvirt import NODE_VNC_PORTS, tiny_guest_xml

try:
    import libvirt
except ImportError:  # reported by the fixture below
    libvirt = None

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("ISOTOPE_VAR", ROOT / "var")) / "infra"
BANNER = "ISOTOPE-GUEST-BOOTED"
MEMORY_MIB = 256


# -- helpers --------------------------------------------------------------------------


def _infra_required() -> bool:
    return infra_required()


def _unavailable(reason: str):
    if _infra_required():
        pytest.fail(f"local libvirt infrastructure required but unavailable: {reason}")
    pytest.skip(reason)


def _state(part: str) -> dict:
    try:
        return json.loads((STATE / f"{part}.json").read_text())
    except (OSError, ValueError):
        return {"ok": False, "reason": f"{part} never started (python3 -m tools.infra {part} up)"}


def _boots(log: str) -> int:
    """Boot banners /init printed itself (the kernel log's copy has a timestamp)."""
    return len(re.findall(rf"(?m)^{BANNER} ", log))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _wait_for(path: Path, needle: str, timeout: float, count: int = 1) -> float | None:
    """Seconds until ``needle`` occurs ``count`` times in the file, or None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _read(path).count(needle) >= count:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _remove(conns, name: str) -> None:
    for conn in conns:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        except libvirt.libvirtError:
            pass


def _echo_via_vga(dom, serial_log: Path, word: str, timeout: float = 15.0) -> bool:
    """Type ``echo WORD > /dev/ttyS0`` on the VGA console; True once WORD is logged."""
    type_keys(dom, f"echo {word} > /dev/ttyS0\n")
    return _wait_for(serial_log, word, timeout) is not None


def _migrate(infra, source: str, target: str, poll_conn, name: str) -> tuple:
    """Migrate with the product's backend (``LibvirtBackend.migrate``: how Isotope moves
    a guest, e.g. paused under TCG on QEMU < 9.0) in a thread, polling jobStats;
    returns (samples, seconds)."""
    from compute.backends.base import MigrationOptions
    from compute.backends.libvirt.backend import LibvirtBackend

    def backend(node: str) -> LibvirtBackend:
        return LibvirtBackend(
            uri=infra["nodes"][node]["uri"],
            virt_type=infra["libvirt"].get("virt_type") or "qemu",
            vnc_ports=NODE_VNC_PORTS[node],
        )

    options = MigrationOptions(bandwidth_mib=64)  # MiB/s: slow enough to watch progress
    result: dict = {}

    def worker():
        try:
            backend(source).migrate(name, backend(target), options)
        except Exception as exc:  # noqa: BLE001 - re-raised in the test's thread
            result["error"] = exc

    watched = poll_conn.lookupByName(name)
    samples = []
    t0 = time.monotonic()
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    while thread.is_alive() and time.monotonic() - t0 < 120:
        try:
            stats = watched.jobStats()
        except libvirt.libvirtError:
            stats = {}
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
            samples.append(stats)
        thread.join(0.25)
    if thread.is_alive():
        watched.abortJob()
        thread.join(30)
        pytest.fail("migration took longer than 120 s (aborted)")
    if "error" in result:
        raise result["error"]
    return samples, time.monotonic() - t0


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def infra():
    if libvirt is None:
        _unavailable("libvirt-python is not installed (pip install libvirt-python)")
    lv, image = _state("libvirt"), _state("image")
    if not lv.get("ok"):
        _unavailable(f"libvirt nodes not up: {lv.get('reason')}")
    if not image.get("ok"):
        _unavailable(f"tiny guest image not built: {image.get('reason')}")
    nodes = {n["name"]: n for n in lv.get("nodes", [])}
    if set(nodes) != {"node1", "node2"}:
        _unavailable(f"libvirt state lists nodes {sorted(nodes)}, not node1 and node2")
    missing = [image[k] for k in ("kernel", "initrd") if not Path(image[k]).exists()]
    if missing:
        _unavailable(f"image files missing: {missing} (python3 -m tools.infra image up)")
    return {"libvirt": lv, "image": image, "nodes": nodes}


@pytest.fixture(scope="module")
def conns(infra):
    # Expected "domain not found" lookups would otherwise be printed to stderr.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    opened = []
    for name in ("node1", "node2"):
        uri = infra["nodes"][name]["uri"]
        try:
            opened.append(libvirt.open(uri))
        except libvirt.libvirtError as exc:
            for c in opened:
                c.close()
            _unavailable(f"cannot connect to {name} at {uri}: {exc}")
    yield opened
    for c in opened:
        c.close()


@pytest.fixture
def guest(infra, conns, request):
    """Start a tiny guest on node1; yields (dom, name, serial log); removes it after."""
    name = f"isotope-smoke-{os.getpid()}-{request.node.name.removeprefix('test_')[:20]}"
    name = re.sub(r"[^A-Za-z0-9-]", "-", name)
    serial_dir = Path(infra["libvirt"].get("serial_dir", "/var/lib/isotope/serial"))
    serial_log = serial_dir / f"{name}.log"
    _remove(conns, name)
    serial_log.unlink(missing_ok=True)
    # The product's own domain definition (compute.backends.libvirt.xml), not a copy.
    xml = tiny_guest_xml(
        name,
        infra["libvirt"].get("virt_type") or "qemu",
        infra["image"],
        str(serial_log),
        memory_mib=MEMORY_MIB,
        tsc_khz=host_tsc_khz(conns[0].getCapabilities()),
    )
    dom = conns[0].createXML(xml, 0)
    started = time.monotonic()
    yield {"dom": dom, "name": name, "serial": serial_log, "started": started}
    _remove(conns, name)
    serial_log.unlink(missing_ok=True)


# -- tests ----------------------------------------------------------------------------


def test_two_nodes_are_distinct_hosts(conns):
    node1, node2 = conns
    assert node1.getType() == node2.getType() == "QEMU"
    assert node1.getHostname() != node2.getHostname()
    assert node2.getHostname() == "node2"
    uuid = re.compile(r"<host>\s*<uuid>([^<]+)</uuid>")
    assert uuid.search(node1.getCapabilities()).group(1) != uuid.search(
        node2.getCapabilities()
    ).group(1)


def test_tiny_guest_boots_on_node1(guest):
    dom, serial, name = guest["dom"], guest["serial"], guest["name"]
    prompt = f"{name}:/# "
    waited = _wait_for(serial, prompt, timeout=GUEST_BOOT_TIMEOUT)
    log = _read(serial)
    assert waited is not None, f"no shell prompt on the serial port; log: {log[-500:]!r}"
    boot_s = time.monotonic() - guest["started"]
    assert f"{BANNER} hostname={name}" in log
    assert _boots(log) == 1
    assert log.index(BANNER) < log.index(prompt)
    # Printed, not asserted: boot time on 2 shared cores is load, not behaviour.
    print(f"shell prompt on the serial port {boot_s:.2f} s after createXML returned")

    xml = dom.XMLDesc(0)
    vnc = re.search(r"<graphics type='vnc' port='(\d+)'[^>]*listen='127.0.0.1'", xml)
    assert vnc and int(vnc.group(1)) >= 5900, xml
    with socket.create_connection(("127.0.0.1", int(vnc.group(1))), timeout=5) as s:
        assert s.recv(12).startswith(b"RFB ")
    # The shell on the VGA console answers keystrokes.
    assert _echo_via_vga(dom, serial, "vgaok"), _read(serial)[-300:]


@pytest.mark.migration
def test_live_migration_round_trip(infra, guest, conns):
    node1, node2 = conns
    serial, name = guest["serial"], guest["name"]
    assert _wait_for(serial, f"{name}:/# ", timeout=GUEST_BOOT_TIMEOUT) is not None, _read(serial)[
        -500:
    ]

    samples, seconds = _migrate(infra, "node1", "node2", node1, name)
    there = node2.lookupByName(name)
    assert there.isActive() and there.isPersistent()
    assert name in node2.listDefinedDomains() + [d.name() for d in node2.listAllDomains()]
    assert name not in [d.name() for d in node1.listAllDomains()]
    progress = [s.get("memory_processed", 0) >> 20 for s in samples]
    assert progress and max(progress) > 0, f"no migration progress seen: {samples}"
    assert any(s.get("memory_total", 0) >= MEMORY_MIB << 20 for s in samples), samples
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    print(f"node1->node2: {seconds:.1f} s, {len(samples)} samples, processed {progress}")
    assert _echo_via_vga(there, serial, "onnodetwo"), _read(serial)[-300:]

    samples, seconds = _migrate(infra, "node2", "node1", node2, name)
    back = node1.lookupByName(name)
    assert back.isActive() and back.isPersistent()
    assert name not in [d.name() for d in node2.listAllDomains()]
    progress = [s.get("memory_processed", 0) >> 20 for s in samples]
    assert progress and max(progress) > 0, f"no migration progress seen: {samples}"
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    print(f"node2->node1: {seconds:.1f} s, {len(samples)} samples, processed {progress}")
    assert _echo_via_vga(back, serial, "backonnodeone"), _read(serial)[-300:]

    log = _read(serial)
    assert _boots(log) == 1, f"the guest rebooted during migration: {log[-800:]!r}"
    assert not re.search(r"Kernel panic|Oops|BUG: ", log), log[-2000:]
