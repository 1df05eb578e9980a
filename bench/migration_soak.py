"""Live-migration soak: the tiny TCG guest node1 → node2 → node1, many times.

Each round trip is two migrations through the product's own code path
(``LibvirtBackend.define``/``start``/``migrate``, the product's domain XML from a
``DomainSpec``). Round trips cycle through scenarios:

- ``boot``: a fresh guest, migrated the moment its shell prompt appears (what
  ``tests/infra/test_libvirt_smoke.py`` does, where the guest once panicked);
- ``early``: a fresh guest, migrated 0.3–2.5 s after start, in the middle of booting;
- ``idle``: a guest that has been idle for ``--idle`` seconds;
- ``busy``: a guest that keeps rewriting and comparing 1 MiB of page cache;

each once without and once with load (``+load``: one CPU burner process per core,
started by this script for that round trip only).

After every migration the guest must be ``running`` on the host it went to, its serial
log must hold no panic/oops text (nor ``CHURN-MISMATCH``), it must answer
(``echo TOKEN > /dev/ttyS0`` typed on its VGA console shows up in the serial log) and it
must not have rebooted. Anything else counts as a crash, with the log tail kept; a guest
that answers only after Ctrl-C (a typed line left pending) counts as ``lost_input``.

Baseline, in the same run (``--baseline-round-trips``): the same scenarios migrated
*live* whatever the guest, as the product did before TCG guests on QEMU < 9.0 were moved
paused (``compute/backends/libvirt/backend.py``, ``TCG_LIVE_MIGRATION_SAFE_FROM``).
Control (``--control-boots``): fresh guests never migrated, checked the same way: what
the machine alone (its load) does to a booting guest. Crashed guests' serial logs are
kept in ``var/bench/``.

    .venv/bin/python bench/migration_soak.py \
        --round-trips 26 --baseline-round-trips 8 --control-boots 4

Needs node1, node2 and the tiny image (``python3 -m tools.infra libvirt up && python3
-m tools.infra image up``); domains are named ``isotope-smoke-soak-*`` and removed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import libvirt  # noqa: E402

from bench._harness import percentiles  # noqa: E402
from compute.backends.base import DomainSpec, MigrationOptions  # noqa: E402
from compute.backends.libvirt import backend as libvirt_backend  # noqa: E402
from compute.backends.libvirt.backend import LibvirtBackend  # noqa: E402
from tools.infra import read_state  # noqa: E402
from tools.infra.image import MEMORY_CHURN, PANIC_TEXT, type_keys  # noqa: E402
from tools.infra.libvirt import NODE_VNC_PORTS  # noqa: E402

BANNER = "ISOTOPE-GUEST-BOOTED"
# Kernel text that means the guest is broken, whatever it does next.
PANIC = re.compile(f"{PANIC_TEXT}|CHURN-MISMATCH")
SCENARIOS = ("boot", "early", "idle", "busy")
LONG_LIVED = ("idle", "busy")
# _check's verdict on a guest that answered only after Ctrl-C: typed input was left
# pending across the migration; counted apart, the guest itself ran on.
LOST_INPUT = "answered only after Ctrl-C"


class SetupError(RuntimeError):
    """A scenario could not be prepared (counted as a failed job, not a crash)."""


_product_rule = libvirt_backend._live_migration_safe


def _always_live(_conn, _domain) -> bool:
    return True


def _burn(stop, parent: int) -> None:
    # Also ends when this script dies without cleaning up (killed): no orphan burners.
    while not stop.is_set() and os.getppid() == parent:
        for _ in range(100_000):
            pass


class Load:
    """One busy-looping process per core while the block runs."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.procs: list[multiprocessing.Process] = []
        self.stop = multiprocessing.Event()

    def __enter__(self):
        if self.enabled:
            for _ in range(os.cpu_count() or 1):
                proc = multiprocessing.Process(
                    target=_burn, args=(self.stop, os.getpid()), daemon=True
                )
                proc.start()
                self.procs.append(proc)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


class Guest:
    """One tiny guest defined and started through the product's backend on node1."""

    def __init__(self, nodes: dict[str, LibvirtBackend], image: dict, tag: str):
        self.nodes = nodes
        self.name = f"isotope-smoke-soak-{os.getpid()}-{tag}"
        self.spec = DomainSpec(
            name=self.name,
            vcpus=1,
            memory_mib=256,
            tenant="bench",
            vm_name=self.name.removeprefix("isotope-"),
            vm_uid=str(uuid.uuid4()),
            kernel=image["kernel"],
            initrd=image["initrd"],
            cmdline=image.get("cmdline", "").replace("isotope.hostname=NAME", "").strip(),
        )
        self.on = "node1"
        self.started = 0.0

    @property
    def log_path(self) -> Path:
        return Path(self.nodes["node1"].serial_log(self.name))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def boots(self) -> int:
        """Boot banners printed by /init itself (the kernel log's copy starts with a
        timestamp)."""
        return len(re.findall(rf"(?m)^{BANNER} ", self.log()))

    def start(self) -> None:
        self.nodes["node1"].define(self.spec)
        self.nodes["node1"].start(self.name)
        self.started = time.monotonic()

    def wait(self, needle: str, timeout: float, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(needle) >= count:
                return True
            time.sleep(0.05)
        return False

    def prompt(self) -> str:
        return f"{self.spec.vm_name}:/# "

    def migrate(self) -> tuple[float, int | None]:
        """One migration to the other node: (seconds, the guest's downtime in ms)."""
        source = self.on
        target = "node2" if source == "node1" else "node1"
        t0 = time.monotonic()
        self.nodes[source].migrate(self.name, self.nodes[target], MigrationOptions())
        seconds = time.monotonic() - t0
        self.on = target
        final = self.nodes[target].migration_progress(self.name, completed=True)
        return seconds, final.downtime_ms if final else None

    def answers(self, token: str, timeout: float) -> bool:
        """Type ``echo TOKEN > /dev/ttyS0`` on the VGA console until TOKEN reaches the
        serial log (typing again covers keys pressed before the tty1 shell was up)."""
        conn = libvirt_backend.shared_connection(self.nodes[self.on].uri)
        domain = conn.lookupByName(self.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            type_keys(domain, f"echo {token} > /dev/ttyS0\n")
            if self.wait(token, min(10.0, max(0.0, deadline - time.monotonic()))):
                return True
        return False

    def keep_busy(self, timeout: float) -> None:
        """Start the memory-writing loop on the VGA console's shell, once that shell
        answers (it starts after the serial one) and until it answers again (the loop
        runs in the background): keys still queued when a migration starts are lost
        input, not what this soak measures."""
        if not self.answers(f"tty1up{random.randrange(10**6)}", timeout):  # noqa: S311
            raise SetupError("the VGA console's shell never answered")
        conn = libvirt_backend.shared_connection(self.nodes[self.on].uri)
        type_keys(conn.lookupByName(self.name), MEMORY_CHURN)
        if not self.answers(f"churning{random.randrange(10**6)}", timeout):  # noqa: S311
            raise SetupError("the shell did not answer after starting the loop")

    def interrupt(self) -> None:
        """Ctrl-C on the VGA console: drops a half-typed line the shell still waits on."""
        conn = libvirt_backend.shared_connection(self.nodes[self.on].uri)
        conn.lookupByName(self.name).sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 50, [29, 46], 2, 0)

    def remove(self) -> None:
        for backend in self.nodes.values():
            try:
                backend.delete(self.name)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass


def _check(guest: Guest, token: str, args) -> str:
    """'' when the guest is fine after a migration, else what is wrong. A guest moved
    while it booted is given ``--boot-timeout`` to reach its shell prompt first."""
    state = guest.nodes[guest.on].status(guest.name)
    if state.state != "running":
        return f"domain is {state.state} ({state.reason}) on {guest.on}"
    if PANIC.search(guest.log()):
        return "panic text in the serial log"
    if not guest.wait(guest.prompt(), args.boot_timeout):
        if PANIC.search(guest.log()):
            return "panic text in the serial log"
        return f"no shell prompt within {args.boot_timeout:.0f} s"
    answer_timeout = args.answer_timeout
    if not guest.answers(token, answer_timeout):
        log = guest.log()
        if PANIC.search(log):
            return "panic text in the serial log"
        # A guest that answers once Ctrl-C dropped a pending line was running all along.
        guest.interrupt()
        if guest.answers(token + "c", answer_timeout):
            return LOST_INPUT
        return f"no answer on the serial port within {answer_timeout:.0f} s, nor after Ctrl-C"
    if guest.boots() > 1:
        return "the guest rebooted"
    return ""


def _keep_log(guest: Guest) -> Path:
    """A copy of a crashed guest's whole serial log under var/bench/ (the guest goes)."""
    kept = ROOT / "var" / "bench" / f"{guest.name}.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(guest.log())
    return kept


def _round_trip(guest: Guest, scenario: str, args, record: dict) -> None:
    for leg in ("there", "back"):
        uptime = time.monotonic() - guest.started
        try:
            seconds, downtime_ms = guest.migrate()
        except Exception as error:  # noqa: BLE001 - a failed job is a result, not a crash
            record["failed"].append(
                {
                    "scenario": scenario,
                    "leg": leg,
                    "uptime_s": round(uptime, 2),
                    "error": str(error),
                    "detail": getattr(error, "detail", ""),
                }
            )
            continue
        record["migrations"] += 1
        record["seconds"].append(seconds)
        if downtime_ms is not None:
            record["downtimes"].append(downtime_ms / 1000)
        token = f"soak{record['migrations']}x{random.randrange(10**6)}"  # noqa: S311
        problem = _check(guest, token, args)
        if problem == LOST_INPUT:
            record["lost_input"].append({"scenario": scenario, "leg": leg})
        elif problem:
            record["crashes"].append(
                {
                    "scenario": scenario,
                    "leg": leg,
                    "uptime_at_migration_s": round(uptime, 2),
                    "problem": problem,
                    "log_tail": guest.log()[-3000:],
                    "log": str(_keep_log(guest)),
                }
            )
            raise RuntimeError(problem)


def run_control(boots: int, nodes, image, args) -> dict:
    """Control: fresh guests that are never migrated, checked the same way (prompt,
    answer, no panic), half of them under load: what the machine alone does to a
    booting TCG guest."""
    record: dict = {"boots": boots, "crashes": []}
    for i in range(boots):
        with Load(i % 2 == 1):
            guest = Guest(nodes, image, f"c{i}")
            guest.remove()
            guest.start()
            problem = ""
            if not guest.wait(guest.prompt(), args.boot_timeout):
                problem = "no shell prompt"
            else:
                problem = _check(guest, f"ctl{i}x{random.randrange(10**6)}", args)
            if problem:
                record["crashes"].append(
                    {"load": i % 2 == 1, "problem": problem, "log": str(_keep_log(guest))}
                )
            guest.remove()
        print(
            f"[control] {i + 1}/{boots}: {len(record['crashes'])} failed boots",
            file=sys.stderr,
            flush=True,
        )
    record["crash_count"] = len(record["crashes"])
    return record


def run_variant(variant: str, round_trips: int, nodes, image, args) -> dict:
    record: dict = {
        "variant": variant,
        "migrations": 0,
        "crashes": [],
        "failed": [],
        "lost_input": [],
        "seconds": [],
        "downtimes": [],
    }
    # The baseline migrates every guest live, as the product did before the fix.
    libvirt_backend._live_migration_safe = _always_live if variant == "live" else _product_rule
    scenarios = args.scenarios
    kept: dict[str, Guest] = {}  # the long-lived guests of "idle" and "busy"
    per_scenario: dict[str, int] = {}
    record["round_trips_done"] = 0
    try:
        for i in range(round_trips):
            scenario = scenarios[(i // 2) % len(scenarios)]
            label = scenario + ("+load" if i % 2 else "")
            per_scenario[label] = per_scenario.get(label, 0) + 1
            with Load(i % 2 == 1):
                guest = kept.get(scenario)
                if guest is None:
                    guest = Guest(nodes, image, f"{variant[0]}{scenario}{i}")
                    guest.remove()
                    guest.start()
                    if scenario == "early":
                        time.sleep(random.uniform(0.3, 2.5))  # noqa: S311
                    elif not guest.wait(guest.prompt(), args.boot_timeout):
                        record["failed"].append({"scenario": label, "error": "no shell prompt"})
                        guest.remove()
                        continue
                    if scenario in LONG_LIVED:
                        kept[scenario] = guest
                        if scenario == "busy":
                            try:
                                guest.keep_busy(args.answer_timeout)
                            except SetupError as error:
                                record["failed"].append({"scenario": label, "error": str(error)})
                                kept.pop(scenario, None)
                                guest.remove()
                                continue
                if scenario in LONG_LIVED:
                    time.sleep(args.idle)
                try:
                    _round_trip(guest, label, args, record)
                    if scenario == "early" and not guest.wait(guest.prompt(), args.boot_timeout):
                        raise RuntimeError("never reached the shell prompt after migrating")
                except RuntimeError as problem:
                    tail = record["crashes"][-1].get("log_tail", "") if record["crashes"] else ""
                    print(
                        f"[{variant}] CRASH in {label}: {problem}\n{tail[-4000:]}",
                        file=sys.stderr,
                        flush=True,
                    )
                    kept.pop(scenario, None)
                    guest.remove()
                    continue
                if scenario not in LONG_LIVED:
                    guest.remove()
            print(
                f"[{variant}] {i + 1}/{round_trips} {label}: {record['migrations']} migrations, "
                f"{len(record['crashes'])} crashes, {len(record['failed'])} failed jobs",
                file=sys.stderr,
                flush=True,
            )
            record["round_trips_done"] = i + 1
    except KeyboardInterrupt:
        # Stopped (Ctrl-C or SIGTERM): what was done so far is still reported.
        record["interrupted"] = True
    finally:
        for guest in kept.values():
            guest.remove()
        libvirt_backend._live_migration_safe = _product_rule
    record["migration_seconds"] = percentiles(record.pop("seconds"))
    record["downtime"] = percentiles(record.pop("downtimes"))
    record["round_trips_by_scenario"] = per_scenario
    record["crash_count"] = len(record["crashes"])
    record["lost_input_count"] = len(record["lost_input"])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=30, help="the product's way")
    parser.add_argument(
        "--baseline-round-trips", type=int, default=0, help="migrating every guest live"
    )
    parser.add_argument("--control-boots", type=int, default=0, help="fresh guests never migrated")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle before 'idle'")
    parser.add_argument("--boot-timeout", type=float, default=120.0)
    parser.add_argument("--answer-timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        type=lambda text: [s for s in text.split(",") if s in SCENARIOS],
        help=f"comma separated, of {', '.join(SCENARIOS)}",
    )
    args = parser.parse_args()
    random.seed(args.seed or None)
    state, image = read_state("libvirt"), read_state("image")
    if not state.get("ok") or not image.get("ok"):
        sys.exit(f"needs libvirt nodes and the tiny image: {state.get('reason')}")
    virt_type = state.get("virt_type") or "qemu"
    # As backend_for_host builds them from the seeded Host records (console port ranges).
    nodes = {
        n["name"]: LibvirtBackend(
            uri=n["uri"],
            virt_type=virt_type,
            vnc_ports=tuple(n.get("vnc_ports") or NODE_VNC_PORTS[n["name"]]),
        )
        for n in state["nodes"]
    }
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = {}
    # The product first: a run cut short still answers the question that matters.
    results["product"] = run_variant("product", args.round_trips, nodes, image, args)
    if args.baseline_round_trips and not results["product"].get("interrupted"):
        results["baseline_live"] = run_variant(
            "live", args.baseline_round_trips, nodes, image, args
        )
    if args.control_boots and not any(r.get("interrupted") for r in results.values()):
        try:
            results["control_no_migration"] = run_control(args.control_boots, nodes, image, args)
        except KeyboardInterrupt:
            results["control_no_migration"] = {"interrupted": True}
    print(
        json.dumps(
            {
                "benchmark": "migration_soak",
                "virt_type": virt_type,
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "idle_seconds": args.idle,
                "scenarios": args.scenarios,
                "qemu_version": nodes["node1"].conn.getVersion(),
                "seconds": round(time.monotonic() - started, 1),
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    threading.current_thread().name = "soak"
    main()
