"""Metrics collection benchmark on libvirt's test driver.

1,000 running domains on one test-driver host, each an Isotope VM (of one tenant, or
spread over ``--tenants``: a collection also publishes each tenant's totals). Measures one
collection cycle (``monitoring.collector.metrics_collect``: the bulk stats call, rates
from counter deltas, one bulk insert of samples, one bulk upsert of counters, tenant
totals, and the live publish of 1,000 points through Redis and the channel layer)
against the raw ``getAllDomainStats`` call alone, in the same run. Also: one 5-minute
rollup over the samples written.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/metrics_collect.py \
        [--domains 1000] [--cycles 20] [--tenants 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import bench_database, django_env, percentiles  # noqa: E402

NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>64</cores><threads>1</threads>
    <active>64</active><mhz>2000</mhz><model>i686</model></cpu>
  <memory>{memory_kib}</memory>
</node>
"""


def setup_django(database_url: str) -> None:
    os.environ.update(django_env(database_url))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(domains: int, uri: str, tenants: int = 1):
    """``tenants`` tenants with ``domains`` Running VMs between them (round robin) on one
    test-driver host, domains started. Uses the backend's shared connection: each open
    of a test URI is its own instance."""
    from compute.backends.libvirt.backend import shared_connection
    from compute.choices import ImageKind, Phase
    from compute.models import Host, Image, VirtualMachine
    from tenants import services as tenant_services

    owners = [tenant_services.tenant_create(actor=None, slug="bench", name="Bench")]
    owners += [
        tenant_services.tenant_create(actor=None, slug=f"bench{n}", name=f"Bench {n}")
        for n in range(1, tenants)
    ]
    image = Image.objects.create(name="tiny", kind=ImageKind.KERNEL, min_memory_mib=64)
    host = Host.objects.create(
        name="bench1", uri=uri, reachable=True, capabilities={"metrics": True}
    )
    vms = VirtualMachine.objects.bulk_create(
        VirtualMachine(
            tenant=owners[i % len(owners)],
            name=f"vm{i:04d}",
            vcpus=1,
            memory_mib=64,
            image=image,
            host=host,
            phase=Phase.RUNNING,
        )
        for i in range(domains)
    )
    conn = shared_connection(uri)
    for vm in vms:
        conn.defineXML(
            f"<domain type='test'><name>{vm.domain_name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
        ).create()
    return host, conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--tenants", type=int, default=1)
    args = parser.parse_args()

    setup_django(bench_database("isotope_bench_metrics"))
    import libvirt
    from django.utils import timezone

    from compute.backends.libvirt.backend import _STATS_GROUPS
    from monitoring import collector, live
    from monitoring.models import VMRollup, VMSample

    node = Path(tempfile.mkdtemp(prefix="isotope-bench-")) / "node.xml"
    node.write_text(NODE_XML.format(memory_kib=args.domains * 64 * 1024 * 2))
    uri = f"test://{node}"
    seeded = time.perf_counter()
    host, conn = seed(args.domains, uri, args.tenants)
    seed_seconds = time.perf_counter() - seeded

    raw = []
    for _ in range(args.cycles):
        start = time.perf_counter()
        records = conn.getAllDomainStats(_STATS_GROUPS, 0)
        raw.append(time.perf_counter() - start)
    assert len(records) == args.domains

    # Collections 10 s apart (simulated clock) so each stores one sample per VM.
    now = timezone.now() - timedelta(seconds=10 * (args.cycles + 1))
    collector.metrics_collect(host=host, now=now)  # first read: counters only
    live.broadcast_many([])  # warm the publisher loop
    cycles, stats_calls, samples = [], [], 0
    for i in range(args.cycles):
        start = time.perf_counter()
        result = collector.metrics_collect(host=host, now=now + timedelta(seconds=10 * (i + 1)))
        cycles.append(time.perf_counter() - start)
        stats_calls.append(result.stats_seconds)
        samples += result.samples
    assert samples == args.domains * args.cycles, samples

    # The live publish alone: one message per VM to its metrics stream (no subscribers).
    from monitoring.choices import LiveMessageType
    from monitoring.groups import metrics_group

    point = {"t": 0, "cpu": 1.0, "mem": 1.0, "rd": 0, "wr": 0, "rx": 0, "tx": 0}
    messages = [
        ([metrics_group("bench", f"vm{i:04d}")], LiveMessageType.METRICS, {"point": point})
        for i in range(args.domains)
    ]
    publish = []
    for _ in range(5):
        start = time.perf_counter()
        live.broadcast_many(messages)
        publish.append(time.perf_counter() - start)

    start = time.perf_counter()
    rollups = collector.metrics_rollup(now=timezone.now() + timedelta(minutes=10))
    rollup_seconds = time.perf_counter() - start

    cycle = percentiles(cycles)
    raw_p = percentiles(raw)
    print(
        json.dumps(
            {
                "benchmark": "metrics_collect",
                "domains": args.domains,
                "tenants": args.tenants,
                "cycles": args.cycles,
                "libvirt": libvirt.getVersion(),
                "seed_seconds": round(seed_seconds, 2),
                "raw_getAllDomainStats": raw_p,
                "stats_call_inside_cycle": percentiles(stats_calls),
                "collection_cycle": cycle,
                "publish_only": percentiles(publish),
                "cycle_over_raw_p50": round(cycle["p50_ms"] / max(raw_p["p50_ms"], 0.001), 1),
                "per_domain_us_p50": round(cycle["p50_ms"] * 1000 / args.domains, 1),
                "samples_written": VMSample.objects.count(),
                "rollup": {
                    "rows": rollups,
                    "stored": VMRollup.objects.count(),
                    "ms": round(rollup_seconds * 1000, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
