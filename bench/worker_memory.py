"""Memory of a Celery worker's pool processes after real work, with the objects its main
process loaded frozen before the fork (``portal.celery.freeze_loaded``) and without.

A worker as ``deploy/`` runs it (the prefork pool, ``--concurrency 4``, production
settings, the ``libvirt`` queue) provisions ``--vms`` VMs created through the service
beforehand, on libvirt's test driver (per VM: its Celery task, the domain defined and
started, the status writes and the live publishes). Once every VM runs, each pool
process's memory is read from ``/proc/<pid>/smaps_rollup``: ``Private_Dirty`` (pages
only that process holds: what it copied from its parent on write, and what it
allocated), ``Pss`` and ``Rss``; and the main process's. Baseline in the same run,
alternated round by round: the same worker with the freeze disconnected
(``bench/worker_unfrozen.py``). ``provision_s``: from the worker's start until every VM
of the round runs (the worker's start-up included).

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/worker_memory.py \\
        [--vms 300] [--rounds 2] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    PRODUCTION,
    _processes,
    bench_database,
    django_env,
    queues_purge,
    spawn,
    stop,
)
from bench.vm_create import seed, setup_django, time_to_running  # noqa: E402

APPS = {"frozen": "portal", "unfrozen": "bench.worker_unfrozen"}


def memory_kib(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Dirty"):
            found[key] = int(rest.split()[0])
    return found


def create(names: list[str]) -> None:
    """Pending VMs, handed to the workers on commit (``compute.services.dispatch``: the
    first arms the dispatch, whose message the worker runs first and which sends each VM
    its ``vm_provision``)."""
    from django.contrib.auth import get_user_model

    from compute.services.vms import vm_create
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="bench")
    user = get_user_model().objects.get(username="bench")
    for name in names:
        vm_create(actor=user, tenant=tenant, name=name, image="tiny", vcpus=1, memory_mib=64)


def one_round(mode: str, names: list[str], database_url: str, concurrency: int) -> dict:
    create(names)
    command = [sys.executable, "-m", "celery", "-A", APPS[mode], "worker", "-Q", "libvirt,default"]
    command += ["-P", "prefork", "-c", str(concurrency), "-l", "warning"]
    env = django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING", **PRODUCTION)
    started = time.perf_counter()
    worker = spawn(command, env, f"worker_memory-{mode}.log")
    try:
        if time_to_running(dict.fromkeys(names, 0.0), timeout=300)["not_running"]:
            raise RuntimeError(f"{mode}: not every VM ran within 300 s (var/bench/)")
        provision_s = time.perf_counter() - started
        time.sleep(1)
        children = [pid for pid, (parent, _) in _processes().items() if parent == worker.pid]
        pool = [memory_kib(pid) for pid in children]
        main = memory_kib(worker.pid)
    finally:
        stop(worker)

    def mib(values: list[int]) -> dict:
        return {
            "median": round(statistics.median(values) / 1024, 1),
            "max": round(max(values) / 1024, 1),
            "sum": round(sum(values) / 1024, 1),
        }

    return {
        "mode": mode,
        "vms": len(names),
        "provision_s": round(provision_s, 2),
        "pool_processes": len(pool),
        "pool_private_dirty_mib": mib([m["Private_Dirty"] for m in pool]),
        "pool_pss_mib": mib([m["Pss"] for m in pool]),
        "pool_rss_mib": mib([m["Rss"] for m in pool]),
        "main_rss_mib": round(main["Rss"] / 1024, 1),
        "main_private_dirty_mib": round(main["Private_Dirty"] / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    database_url = bench_database("isotope_bench_worker_memory")
    setup_django(database_url)
    seed(args.vms * args.rounds * len(APPS))
    queues_purge("libvirt", "default")  # an earlier run's messages and waiting provisions
    rounds = []
    for number in range(args.rounds):
        for mode in APPS:
            names = [f"{mode[0]}{number}-{i}" for i in range(args.vms)]
            rounds.append(one_round(mode, names, database_url, args.concurrency))
    queues_purge("libvirt", "default")
    summary = {
        mode: {
            "pool_private_dirty_mib_median": [
                r["pool_private_dirty_mib"]["median"] for r in rounds if r["mode"] == mode
            ],
            "pool_pss_mib_sum": [r["pool_pss_mib"]["sum"] for r in rounds if r["mode"] == mode],
            "provision_s": [r["provision_s"] for r in rounds if r["mode"] == mode],
        }
        for mode in APPS
    }
    print(
        json.dumps(
            {
                "benchmark": "worker_memory",
                "vms": args.vms,
                "concurrency": args.concurrency,
                "cores": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "rounds": rounds,
                "summary": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
