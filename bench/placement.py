"""What placing one VM costs as the VMs already placed grow: 10 against 10,000.

A create chooses its host from an unlocked read of every host with what is placed on
each (``compute.scheduler.schedule(lock=False)``, in a create's own transaction), then,
with its rows written, locks the chosen host's row and reads its counters (``confirm``
in a create's own transaction: one ``SELECT … FOR UPDATE``; its own VM counts at the
commit). What is placed is the
host rows' counters, kept by the database's triggers (migration 0034). Until then both
steps summed the VM rows (and the migrations on their way), which grew with the VMs
placed: ``sums`` times that statement for one host (``host_sums``), as ``confirm``
ran it, to show what the counters replaced, in the same run.

This bench times each step, wall clock in this process (the database's time included),
``--samples`` times, at two sizes of the same database: 10 VMs and then 10,000 more,
spread over two hosts, after an ``VACUUM ANALYZE`` of the VM and host tables (what
autovacuum does after a burst of writes). The baseline is the same step at 10 VMs, in
the same run; the ratios are what to read. Production settings
(``bench/_harness.PRODUCTION``: no query log).

    DATABASE_URL=postgres://... .venv/bin/python bench/placement.py [--vms 10000] [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import PRODUCTION, bench_database, django_env, percentiles  # noqa: E402


def timed(step, samples: int) -> dict:
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    return percentiles(timings)


def steps(hosts) -> dict:
    """The two reads a create makes, each in a transaction of its own, and the sums
    the second one made before the counters."""
    from django.db import transaction

    from compute.scheduler import _lock_usage, host_sums, schedule

    def place() -> None:
        with transaction.atomic():
            schedule(vcpus=1, memory_mib=256, lock=False, fresh=True)

    def confirm() -> None:
        with transaction.atomic():
            _lock_usage(hosts[0].pk)

    def sums() -> None:
        with transaction.atomic():
            host_sums([hosts[0].pk])

    return {"placement_read": place, "confirm": confirm, "sums": sums}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    # Production settings in this process too (no query log), as deploy/ runs a web process.
    os.environ.update(django_env(bench_database("isotope_bench_placement"), **PRODUCTION))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)

    from bench._harness import seed_vms
    from compute.models import Host, Image, VirtualMachine

    tenant, _ = seed_vms(10, role="admin")
    Host.objects.update(cpus=10**6, memory_mib=10**9)  # room for all: every host is a candidate
    Host.objects.create(
        name="test2", uri="test:///two", reachable=True, cpus=10**6, memory_mib=10**9
    )
    hosts = list(Host.objects.order_by("pk"))
    run = steps(hosts)

    def measure() -> dict:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {VirtualMachine._meta.db_table}")
            cursor.execute(f"VACUUM ANALYZE {Host._meta.db_table}")
        return {name: timed(step, args.samples) for name, step in run.items()}

    small = measure()
    image = Image.objects.get(name="tiny")
    VirtualMachine.objects.bulk_create(
        [
            VirtualMachine(
                uid=uuid.uuid4(),
                tenant=tenant,
                name=f"more-{i:05d}",
                vcpus=1,
                memory_mib=256,
                image=image,
                host=hosts[i % 2],
            )
            for i in range(args.vms)
        ],
        batch_size=2000,
    )
    from compute.scheduler import hosts_miscounted

    assert not hosts_miscounted(), hosts_miscounted()  # the triggers counted the rows
    large = measure()
    result = {
        "benchmark": "placement",
        "cores": os.cpu_count(),
        "samples": args.samples,
        "vms_small": 10,
        "vms_large": 10 + args.vms,
        "small": small,
        "large": large,
        "p50_ratio_large_vs_small": {
            name: round(large[name]["p50_ms"] / max(small[name]["p50_ms"], 0.001), 2)
            for name in run
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
