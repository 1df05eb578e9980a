"""VM create benchmark on libvirt's test driver.

Measures, through the real stack (the web tier as ``make run`` starts it — gunicorn with
``deploy/gunicorn.conf.py`` and N uvicorn processes — Django, PostgreSQL, Redis and a
Celery worker): the API's accept latency (HTTP 202) with K concurrent clients and
creates/s, for each N in ``--processes``, and create→Running per VM. Baselines in the
same run: for each N, the same number of requests with the same body and token to a
trivial DRF view in the same server (``bench/trivial_urls.py``: middleware, token auth,
permission check, no database write), posted just before the creates, after a warm-up
of both kinds that is not counted (``--warmup``; ``--rounds`` repeats the pair in the
same server and pools the latencies); raw libvirt
define+start calls on a test-driver connection. Also: the cost of one quota check with
10 and with 10,000 existing reservations. Per N, from the first create until every VM
runs (``cpu_until_running``): CPU milliseconds per create used by the web tier, the
worker, PostgreSQL (its whole server), this process (the clients) and the machine, and
the cores the machine kept busy — whether the run was bounded by the CPU it had.
``web_gc_pauses``: the web processes' garbage-collector pauses over their whole life
(full collections, and the others of 5 ms or more; ``bench/gc_gunicorn.conf.py``).

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/vm_create.py \
        [--vms 200] [--clients 20] [--processes 1,2,4] [--provision during|after] \
        [--warmup 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    PRODUCTION,
    bench_database,
    cpu_per_item,
    cpu_seconds,
    django_env,
    free_port,
    percentiles,
    queues_purge,
    spawn,
    stop,
    wait_http,
)


def raw_libvirt(n: int) -> dict:
    import libvirt

    conn = libvirt.open("test:///default")
    timings = []
    for i in range(n):
        xml = (
            f"<domain type='test'><name>raw-{i}</name><memory unit='MiB'>256</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
        )
        start = time.perf_counter()
        conn.defineXML(xml).create()
        timings.append(time.perf_counter() - start)
    return percentiles(timings)


def setup_django(database_url: str) -> None:
    os.environ.update(django_env(database_url))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(vms: int) -> str:
    from django.contrib.auth import get_user_model

    from compute.choices import ImageKind
    from compute.models import Host, Image
    from compute.services.hosts import host_check
    from tenants import services
    from tenants.choices import Role

    tenant = services.tenant_create(
        actor=None, slug="bench", quota={"vms": vms + 10, "cpu": vms + 10, "memory": 10**8}
    )
    user = get_user_model().objects.create_user("bench")
    services.membership_add(actor=None, tenant=tenant, user=user, role=Role.OPERATOR)
    host = Host.objects.create(name="test", uri="test:///default", cpu_ratio=100)
    host_check(host)
    Host.objects.filter(pk=host.pk).update(memory_mib=10**9, cpus=10**4)
    Image.objects.create(
        name="tiny", kind=ImageKind.KERNEL, kernel_path="/k", initrd_path="/i", min_memory_mib=64
    )
    _, key = services.token_create(user=user, name="bench")
    return key


def post_all(
    port: int, key: str, path: str, names: list[str], clients: int
) -> tuple[dict, dict[str, float], float, list[float]]:
    """POST one VM body per name to ``path`` from ``clients`` threads; returns latency
    percentiles (accepted requests), name → accept time, the wall time and the
    latencies (seconds)."""
    accepted: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    pending = iter(names)

    def client() -> None:
        while True:
            with lock:
                name = next(pending, None)
            if name is None:
                return
            body = json.dumps(
                {
                    "metadata": {"name": name},
                    "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 64},
                }
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                data=body,
                headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
                method="POST",
            )
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    ok = response.status in (201, 202)
            except Exception as error:  # noqa: BLE001 - counted and reported
                ok = False
                with lock:
                    errors.append(str(error))
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(elapsed)
                    accepted[name] = time.time()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    result = percentiles(latencies)
    result["errors"] = len(errors)
    result["per_s"] = round(len(accepted) / wall, 1)
    if errors:
        result["first_error"] = errors[0][:200]
    return result, accepted, wall, latencies


def time_to_running(accepted: dict[str, float], timeout: float = 120) -> dict:
    from compute.choices import Phase
    from compute.models import VirtualMachine

    mine = VirtualMachine.objects.filter(name__in=list(accepted), phase=Phase.RUNNING)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mine.count() >= len(accepted):
            break
        time.sleep(0.2)
    rows = mine.values_list("name", "created", "phase_changed")
    durations = [(changed - created).total_seconds() for _, created, changed in rows]
    result = percentiles(durations)
    result["not_running"] = len(accepted) - len(durations)
    return result


def quota_check_cost(existing: int, samples: int = 200) -> dict:
    from django.db import transaction

    from tenants import services
    from tenants.models import Quota, Reservation, Tenant

    tenant = services.tenant_create(actor=None, slug=f"q{existing}", quota={"pods": 10**6})
    Reservation.objects.bulk_create(
        [Reservation(tenant=tenant, ref=f"q{existing}:{i}", pods=1) for i in range(existing)],
        batch_size=2000,
    )
    Quota.objects.filter(tenant=tenant).update(used_pods=existing)
    tenant = Tenant.objects.get(pk=tenant.pk)
    timings = []
    for i in range(samples):
        start = time.perf_counter()
        with transaction.atomic():
            services.quota_reserve(tenant=tenant, ref=f"q{existing}:new{i}", pods=1)
        timings.append(time.perf_counter() - start)
    return percentiles(timings)


def postmaster_pid() -> int:
    """The bench database's PostgreSQL server process (its backends are children)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])


TRIVIAL = "/bench/trivial/"
CREATE = "/api/v1/tenants/bench/virtualmachines/"


def one_tier(
    processes: int,
    database_url: str,
    key: str,
    vms: int,
    clients: int,
    worker_pid: int,
    provision: str = "during",
    warmup: int = 20,
    rounds: int = 1,
) -> dict:
    """The web tier with ``processes`` processes: ``rounds`` times the trivial-view
    baseline and then the creates, ``vms`` of each per round.

    First, ``warmup`` requests of each kind per process, posted by ``clients`` threads
    as the measured ones are, and not counted; the warm-up VMs run before the first
    round. Until 2026-12-05 only 10 trivial requests per process from 4 threads were
    posted first: the first creates of each process (its first imports, statements and
    pool connections) and the trivial requests that opened the pool's other connections
    were measured, in a p99 of 200 requests.

    Per round, from the first create until every VM runs: the CPU each part used per
    create (the web tier, the worker, PostgreSQL, this process's clients, the whole
    machine) and the cores the machine kept busy. PostgreSQL counts whole when its server
    runs here. ``cpu_accept``: the same from the first create until the last is
    accepted. ``provision`` ``after``: the worker is stopped (SIGSTOP) while the creates
    are posted and continued (SIGCONT) once the last is accepted, as if it ran on the
    libvirt host's machine; its queue keeps every task meanwhile. The tier's latencies
    are those of every round together; ``rounds`` has each one's own."""
    env = django_env(
        database_url,
        DJANGO_SETTINGS_MODULE="bench.trivial_settings",
        ISOTOPE_LOG_LEVEL="WARNING",
        ISOTOPE_WEB_PROCESSES=str(processes),
        **PRODUCTION,
    )
    port = free_port()
    env["ISOTOPE_WEB_BIND"] = f"127.0.0.1:{port}"
    # Each web process logs its garbage-collector pauses here (bench/gc_gunicorn.conf.py).
    gc_logs = Path(tempfile.mkdtemp(prefix="vm_create-gc-"))
    env["ISOTOPE_BENCH_GC_DIR"] = str(gc_logs)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    web = spawn(
        [gunicorn, "-c", "bench/gc_gunicorn.conf.py", "portal.asgi:application"],
        env,
        f"vm_create-web-{processes}.log",
    )
    roots = {"web": web.pid, "worker": worker_pid, "postgres": postmaster_pid()}
    samples: dict[str, list[float]] = {"trivial": [], "create": []}
    per_round = []
    try:
        wait_http(port, timeout=60)
        # Every process imports the app, opens its pool and reads its first rows on its
        # first requests: warm every process up with both kinds first.
        warm = warmup * processes
        post_all(port, key, TRIVIAL, [f"warm-t{processes}-{i}" for i in range(warm)], clients)
        _, warmed, _, _ = post_all(
            port, key, CREATE, [f"warm{processes}-{i}" for i in range(warm)], clients
        )
        time_to_running(warmed)
        for number in range(rounds):
            tag = f"{processes}-{number}" if rounds > 1 else f"{processes}"
            names = [f"vm{tag}-{i}" for i in range(vms)]
            if provision == "after":
                # Elsewhere for the baseline too: what it still does for the last round's
                # VMs is not this machine's work.
                os.kill(worker_pid, signal.SIGSTOP)
            try:
                start, started = cpu_seconds(roots), time.process_time()
                trivial, _, trivial_wall, trivial_latencies = post_all(
                    port, key, TRIVIAL, [f"t{tag}-{i}" for i in range(vms)], clients
                )
                trivial_cpu = cpu_seconds(roots)
                start["clients"], trivial_cpu["clients"] = started, time.process_time()
                samples["trivial"] += trivial_latencies
                before, clock, own = cpu_seconds(roots), time.perf_counter(), time.process_time()
                accept, accepted, accept_wall, latencies = post_all(
                    port, key, CREATE, names, clients
                )
                accepted_cpu = cpu_seconds(roots)
                accepted_cpu["clients"] = time.process_time()
            finally:
                if provision == "after":
                    os.kill(worker_pid, signal.SIGCONT)
            samples["create"] += latencies
            running = time_to_running(accepted)
            after = cpu_seconds(roots)
            after["clients"], before["clients"] = time.process_time(), own
            per_round.append(
                {
                    "trivial_drf_view": trivial,
                    "api_accept": accept,
                    "accept_p99_vs_trivial_p99": _ratio(accept, trivial),
                    "cpu_trivial": cpu_per_item(
                        start, trivial_cpu, len(trivial_latencies), trivial_wall
                    ),
                    "create_to_running": running,
                    "cpu_accept": cpu_per_item(before, accepted_cpu, len(accepted), accept_wall),
                    "cpu_until_running": cpu_per_item(
                        before, after, len(accepted), time.perf_counter() - clock
                    ),
                }
            )
    finally:
        stop(web)
    pauses = gc_pauses(gc_logs)
    shutil.rmtree(gc_logs, ignore_errors=True)
    trivial, accept = percentiles(samples["trivial"]), percentiles(samples["create"])
    for kind, result in (("trivial_drf_view", trivial), ("api_accept", accept)):
        result["errors"] = sum(r[kind]["errors"] for r in per_round)
        result["per_s"] = round(statistics.median(r[kind]["per_s"] for r in per_round), 1)
    return {
        "web_processes": processes,
        "warmup_per_process": warmup,
        "trivial_drf_view": trivial,
        "api_accept": accept,
        "creates_per_s": accept["per_s"],
        "accept_p99_vs_trivial_p99": _ratio(accept, trivial),
        **{
            key: per_round[-1][key]
            for key in ("create_to_running", "cpu_accept", "cpu_until_running")
        },
        "rounds": per_round if rounds > 1 else [],
        # Over the web processes' whole life (warm-up and every round).
        "web_gc_pauses": pauses,
    }


def gc_pauses(folder: Path) -> dict:
    """Per generation: how many pauses the logs in ``folder`` hold, their median and
    longest (milliseconds), over all the web processes."""
    pauses: dict[int, list[float]] = {}
    for path in folder.glob("gc-*.log"):
        for line in path.read_text().splitlines():
            generation, took = line.split()
            pauses.setdefault(int(generation), []).append(float(took))
    summary = {}
    for generation, values in sorted(pauses.items()):
        values.sort()
        summary[f"gen{generation}" + ("" if generation == 2 else "_over_5ms")] = {
            "n": len(values),
            "median_ms": round(values[len(values) // 2], 1),
            "max_ms": round(values[-1], 1),
        }
    return summary


def _ratio(accept: dict, trivial: dict) -> float:
    return round(accept.get("p99_ms", 0) / max(trivial.get("p99_ms", 0), 0.001), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=200, help="creates per web-tier size")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--processes", default="1,2,4", help="web-tier sizes, comma separated")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the Celery worker under nice -n N (0: default priority, as the Procfile runs it)",
    )
    parser.add_argument(
        "--provision",
        choices=("during", "after"),
        default="during",
        help="during: the worker provisions while creates are posted (one machine for "
        "everything); after: it is stopped until the last create is accepted",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="requests of each kind per web process posted before the measured ones",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="trivial-view then create runs per web-tier size, in the same server",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.processes.split(",")]

    database_url = bench_database("isotope_bench_vm")
    setup_django(database_url)
    key = seed(sum((args.vms * args.rounds + args.warmup * n) for n in sizes))
    queues_purge("libvirt", "default")  # an earlier run's messages and waiting provisions
    python = sys.executable
    worker = spawn(
        ["nice", "-n", str(args.worker_nice)]
        + [python, "-m", "celery", "-A", "portal", "worker", "-Q", "libvirt,default"]
        + ["-P", "threads", "-c", "4", "-l", "warning"],
        django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING", **PRODUCTION),
        "vm_create-worker.log",
    )
    try:
        time.sleep(2)  # the worker connects to Redis
        tiers = [
            one_tier(
                n,
                database_url,
                key,
                args.vms,
                args.clients,
                worker.pid,
                args.provision,
                warmup=args.warmup,
                rounds=args.rounds,
            )
            for n in sizes
        ]
    finally:
        stop(worker)
    baseline = raw_libvirt(args.vms)
    quota = {"10": quota_check_cost(10), "10000": quota_check_cost(10_000)}
    print(
        json.dumps(
            {
                "benchmark": "vm_create",
                "vms": args.vms,
                "clients": args.clients,
                "cores": os.cpu_count(),
                "channel_layer": os.environ.get("ISOTOPE_CHANNEL_LAYER", "pubsub"),
                "db_pool_size": int(os.environ.get("ISOTOPE_DB_POOL_SIZE", "0")),
                "worker_nice": args.worker_nice,
                "provision": args.provision,
                "warmup_per_process": args.warmup,
                "rounds": args.rounds,
                "tiers": tiers,
                "baseline_raw_libvirt_define_start": baseline,
                "quota_check": quota,
                "quota_check_p50_ratio_10000_vs_10": round(
                    quota["10000"]["p50_ms"] / max(quota["10"]["p50_ms"], 0.001), 2
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
