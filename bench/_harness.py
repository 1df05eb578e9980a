"""Shared pieces for benchmarks: a private database, the portal and a worker as
subprocesses, percentiles. Benchmarks print one JSON document on stdout."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {
        "n": len(ordered),
        "p50_ms": round(pick(0.50) * 1000, 2),
        "p95_ms": round(pick(0.95) * 1000, 2),
        "p99_ms": round(pick(0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def bench_database(name: str) -> str:
    """A fresh PostgreSQL database next to ``DATABASE_URL``'s; returns its URL."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit("benchmarks need DATABASE_URL pointing at PostgreSQL (see bench/README.md)")
    url = urlsplit(base)
    admin = urlunsplit(url._replace(path="/postgres"))
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(url._replace(path=f"/{name}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What a spawned server needs to run as ``deploy/`` runs it: ``DEBUG`` off (no query
# log, no debug pages), behind a proxy that terminates TLS (``ISOTOPE_HTTPS`` off here:
# the bench talks plain HTTP on loopback).
PRODUCTION = {"ISOTOPE_DEBUG": "0", "SECRET_KEY": "bench-" + "x" * 50, "ISOTOPE_HTTPS": "0"}


def django_env(database_url: str, **extra: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ISOTOPE_DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        **extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def spawn(args: list[str], env: dict, log: str) -> subprocess.Popen:
    logdir = ROOT / "var" / "bench"
    logdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=open(logdir / log, "w"),  # noqa: SIM115 - lives as long as the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_http(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _processes() -> dict[int, tuple[int, float]]:
    """Every process: pid → (parent pid, CPU seconds it and its reaped children used)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        # After "pid (comm) ": state, ppid, ..., utime, stime, cutime, cstime (fields 14-17).
        fields = raw[raw.rindex(")") + 2 :].split()
        used = sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
        found[int(entry.name)] = (int(fields[1]), used)
    return found


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree (``roots``: name → root pid),
    and by the whole machine under ``"machine"`` (every core's non-idle time). A
    process's reaped children count through its own figures, live ones through theirs."""
    found = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in found.items():
        children.setdefault(parent, []).append(pid)
    result = {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += found.get(pid, (0, 0.0))[1]
            todo.extend(children.get(pid, []))
        result[name] = total
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]  # idle + iowait
    result["machine"] = (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    return result


def cpu_per_item(before: dict, after: dict, items: int, wall: float) -> dict:
    """Between two ``cpu_seconds`` readings: CPU ms per item for each tree and the
    machine, and how many cores the machine kept busy on average."""
    return {
        "cpu_ms_per_item": {
            name: round((after[name] - before[name]) * 1000 / max(items, 1), 1) for name in after
        },
        "machine_cores_busy": round((after["machine"] - before["machine"]) / max(wall, 1e-9), 2),
        "window_s": round(wall, 1),
    }


def stop(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def seed_vms(vms: int, *, role: str):
    """The tenant ``bench`` with ``vms`` VMs (mostly Running, some Stopped or Failed),
    each holding its quota reservation as a created VM does, and the member ``bench``
    with ``role``. Rows are bulk-inserted: listing needs no libvirt."""
    import uuid

    from django.contrib.auth import get_user_model
    from django.db.models import F

    from compute.choices import ImageKind, Phase
    from compute.models import Host, Image, VirtualMachine
    from tenants import services
    from tenants.choices import ReservationKind
    from tenants.models import Quota, Reservation

    tenant = services.tenant_create(
        actor=None, slug="bench", quota={"vms": vms, "cpu": vms, "memory": vms * 256}
    )
    user = get_user_model().objects.create_user("bench")
    services.membership_add(actor=None, tenant=tenant, user=user, role=role)
    host = Host.objects.create(name="test", uri="test:///default", reachable=True)
    image = Image.objects.create(
        name="tiny", kind=ImageKind.KERNEL, kernel_path="/k", initrd_path="/i"
    )
    phases = [Phase.RUNNING] * 8 + [Phase.STOPPED, Phase.FAILED]
    machines = VirtualMachine.objects.bulk_create(
        [
            VirtualMachine(
                uid=uuid.uuid4(),
                tenant=tenant,
                name=f"vm-{i:05d}",
                vcpus=1,
                memory_mib=256,
                image=image,
                host=host,
                phase=phases[i % len(phases)],
                labels={"app": f"app-{i % 50}"},
            )
            for i in range(vms)
        ],
        batch_size=2000,
    )
    Reservation.objects.bulk_create(
        [
            Reservation(
                tenant=tenant,
                ref=f"vm:{vm.uid}",
                kind=ReservationKind.VM,
                object_id=str(vm.uid),
                cpu=1,
                memory=256,
                vms=1,
            )
            for vm in machines
        ],
        batch_size=2000,
    )
    Quota.objects.filter(tenant=tenant).update(
        used_cpu=F("used_cpu") + vms, used_memory=F("used_memory") + vms * 256, used_vms=vms
    )
    return tenant, user


def queues_purge(*queues: str) -> None:
    """Drop the Celery messages a benchmark left on ``queues`` (work no worker will run:
    its VMs, images or networks are gone with its database), and the VMs waiting for a
    provision dispatch (``compute.services.dispatch``)."""
    from compute.services.dispatch import provision_requests_clear
    from portal.celery import app

    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)
    provision_requests_clear()


def profile_tables(profile, name: str, rows: int = 35) -> dict:
    """The top ``rows`` functions of a cProfile run by cumulative and by own CPU, for the
    JSON; the whole profile is saved as ``var/<name>.prof``."""
    import io
    import pstats

    tables = {}
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(rows)
        lines = [line.strip() for line in out.getvalue().splitlines() if line.strip()]
        tables[order] = lines[-rows:]
    path = ROOT / "var" / f"{name}.prof"
    profile.dump_stats(str(path))
    return {"file": f"var/{name}.prof", "calls_and_cpu_seconds": tables}
