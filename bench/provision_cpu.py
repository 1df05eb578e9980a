"""CPU per VM provisioning in the worker (Pending → Running), in one process.

Each VM is created through the service (its transaction, as the API's accept path
writes it) with no worker running, then provisioned by running the Celery task
``vm_provision`` in this process (``Task.apply``: the task's own code, its VM lock in
Redis, its writes to PostgreSQL, its live publishes), one at a time, on libvirt's test
driver. Each task is charged this process's CPU time (``time.process_time()``, every
thread). PostgreSQL's and Redis's CPU are other processes and not counted. Baseline in
the same run, interleaved VM by VM: the raw libvirt calls a provisioning makes, that is
``defineXML`` of the same domain XML (the one the task defined for the VM before,
renamed) and ``create()`` on the same connection. Production settings (``DEBUG`` off).
``statements`` and ``transactions``: SQL statements and ``BEGIN`` s per provisioning
(median over the measured tasks). ``--profile`` adds the top functions of cProfile over
the measured tasks and saves ``var/provision_cpu.prof``.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/provision_cpu.py \\
        [--vms 200] [--warmup 20] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import bench_database, profile_tables, queues_purge  # noqa: E402
from bench.accept_cpu import setup, stats  # noqa: E402


def create_all(n: int) -> list[int]:
    from django.contrib.auth import get_user_model

    from compute.services.vms import vm_create
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="bench")
    user = get_user_model().objects.get(username="bench")
    return [
        vm_create(
            actor=user, tenant=tenant, name=f"vm-{i}", image="tiny", vcpus=1, memory_mib=64
        ).pk
        for i in range(n)
    ]


def raw_define_start(conn, xml: str, name: str) -> None:
    """What a provisioning asks of libvirt: define the domain, start it."""
    import re

    xml = re.sub(r"<name>[^<]*</name>", f"<name>{name}</name>", xml, count=1)
    xml = re.sub(r"<uuid>[^<]*</uuid>", "", xml, count=1)
    conn.defineXML(xml).create()


def run(vm_ids: list[int], warmup: int, profile: cProfile.Profile | None) -> dict:
    import libvirt
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from compute.choices import Phase
    from compute.models import VirtualMachine
    from compute.tasks.libvirt import vm_provision

    conn = libvirt.open("test:///default")
    cpu: dict[str, list[float]] = {"provision": [], "raw": []}
    statements: list[int] = []
    transactions: list[int] = []
    xml = ""
    for index, vm_id in enumerate(vm_ids):
        measured = index >= warmup
        started = time.process_time()
        if measured and profile is not None:
            profile.enable()
        with CaptureQueriesContext(connection) as queries:
            vm_provision.apply(args=(vm_id,))
        if measured and profile is not None:
            profile.disable()
        used = time.process_time() - started
        vm = VirtualMachine.objects.get(pk=vm_id)
        if vm.phase != Phase.RUNNING:
            raise RuntimeError(f"{vm.name} is {vm.phase}: {vm.message}")
        if xml:
            started = time.process_time()
            raw_define_start(conn, xml, f"raw-{index}")
            raw = time.process_time() - started
        xml = conn.lookupByName(vm.domain_name).XMLDesc(0)
        if measured and index > 0:
            cpu["provision"].append(used)
            cpu["raw"].append(raw)
            sql = [query["sql"] for query in queries.captured_queries]
            statements.append(len(sql))
            transactions.append(sum(1 for text in sql if text.upper().startswith("BEGIN")))
    result = {kind: stats(values) for kind, values in cpu.items()}
    result["provision_vs_raw_cpu_median"] = round(
        result["provision"]["median_ms"] / result["raw"]["median_ms"], 1
    )
    result["statements_median"] = statistics.median(statements)
    result["transactions_median"] = statistics.median(transactions)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    setup(bench_database("isotope_bench_provision_cpu"))
    from bench.vm_create import seed

    seed(args.vms + args.warmup)
    vm_ids = create_all(args.vms + args.warmup)
    profile = cProfile.Profile(time.process_time) if args.profile else None
    result = run(vm_ids, args.warmup, profile)
    if profile is not None:
        result["profile"] = profile_tables(profile, "provision_cpu")

    queues_purge("libvirt")
    print(
        json.dumps(
            {
                "benchmark": "provision_cpu",
                "vms": args.vms,
                "cores": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                **result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
