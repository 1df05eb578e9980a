"""VM pool scale-up on libvirt's test driver: cold (provision every member) vs warm
(start members defined ahead) vs warm-paused (resume members booted and suspended
ahead), against raw libvirt doing the same in the same run; and the autoscaler's
reaction time.

Through the real stack (PostgreSQL + Redis + a Celery worker running the pool
controller and the VM tasks, as the portal does): for each N, a pool at 0 replicas is
scaled to N and timed until the pool records N members Running and Ready (``cold``);
then the same with a pool keeping N warm members beforehand, defined and stopped
(``warm``: the scale-up starts them) or booted and paused (``warm-paused``: the
scale-up resumes them). Baselines in the same run, in this process on
``test:///default``: N ``defineXML()`` + ``create()`` (what cold provisioning does at
least), N ``create()`` of domains defined beforehand (a warm start) and N ``resume()``
of suspended domains (a paused warm start).

Reaction time (``--reaction-repeat``, 0 to skip): a pool of 1 Ready member with an
autoscaler (CPU, target 50 %, min 1, max 4); this process enqueues the autoscaler sweep
every ``--tick`` seconds (what beat does every ``ISOTOPE_AUTOSCALER_SECONDS``, 15 s by
default) and, at t0, starts writing the member's collector samples at 90 % CPU every
0.25 s (the test driver's guests do no work, so the load is simulated at the metric).
Timed from t0 (the metric over target) until the first new member is Running, for a
cold pool and one keeping a paused warm member.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/pools.py \
        [--sizes 1,5,10] [--repeat 3] [--tick 1] [--reaction-repeat 3]
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

from bench._harness import bench_database, django_env, spawn, stop  # noqa: E402


def raw_libvirt(n: int, prefix: str) -> dict:
    """Seconds for N define+start, and for N start of domains defined beforehand."""
    import libvirt

    conn = libvirt.open("test:///default")

    def xml(name: str) -> str:
        return (
            f"<domain type='test'><name>{name}</name><memory unit='MiB'>256</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
        )

    start = time.perf_counter()
    for i in range(n):
        conn.defineXML(xml(f"{prefix}-cold-{i}")).create()
    cold = time.perf_counter() - start
    defined = [conn.defineXML(xml(f"{prefix}-warm-{i}")) for i in range(n)]
    start = time.perf_counter()
    for domain in defined:
        domain.create()
    warm = time.perf_counter() - start
    for domain in defined:
        domain.suspend()
    start = time.perf_counter()
    for domain in defined:
        domain.resume()
    resumed = time.perf_counter() - start
    conn.close()
    return {
        "define_start_s": round(cold, 4),
        "start_defined_s": round(warm, 4),
        "resume_paused_s": round(resumed, 4),
    }


def setup_django(database_url: str) -> None:
    os.environ.update(django_env(database_url))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed():
    from compute.choices import ImageKind
    from compute.models import Host, Image
    from compute.services.hosts import host_check
    from tenants import services

    tenant = services.tenant_create(
        actor=None, slug="bench", quota={"vms": 1000, "cpu": 1000, "memory": 10**8}
    )
    host = Host.objects.create(name="test", uri="test:///default", cpu_ratio=100)
    host_check(host)
    Host.objects.filter(pk=host.pk).update(memory_mib=10**9, cpus=10**4)
    Image.objects.create(
        name="tiny", kind=ImageKind.KERNEL, kernel_path="/k", initrd_path="/i", min_memory_mib=64
    )
    return tenant


def wait(check, timeout: float, what: str) -> float:
    """Poll ``check`` until true; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


MODES = {"cold": None, "warm": "stopped", "warm-paused": "paused"}


def one_scale_up(tenant, name: str, n: int, warm_mode: str | None) -> float:
    """Seconds from the scale call until N members are Running and Ready (warm_mode
    None: no warm members)."""
    from compute.models import VirtualMachine, VMPool
    from compute.services import pools as pool_services

    warm = warm_mode is not None
    pool = pool_services.pool_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=128,
        replicas=0,
        warm=n if warm else 0,
        warm_mode=warm_mode or "stopped",
    )

    def now() -> VMPool:
        return VMPool.objects.get(pk=pool.pk)

    if warm:
        wait(lambda: now().warm_replicas == n, 300, f"{n} warm members of {name}")
    start = time.monotonic()
    pool_services.pool_scale(actor=None, pool=now(), replicas=n)
    done = wait(lambda: now().ready_replicas == n, 300, f"{n} ready members of {name}")
    if warm:
        started = VirtualMachine.objects.filter(
            pool=pool, name__in=[f"{name}-{i}" for i in range(n)]
        )
        assert started.filter(pool_warm=False).count() == n, "warm members were not used"
    pool_services.pool_delete(actor=None, pool=now())
    wait(lambda: not VMPool.objects.filter(pk=pool.pk).exists(), 300, f"{name} deleted")
    return done - start


def one_reaction(tenant, name: str, warm_mode: str | None, tick: float) -> float:
    """Seconds from the member's metric going over target until the autoscaler's first
    new member is Running."""
    from django.utils import timezone

    from compute.choices import Phase
    from compute.models import VirtualMachine, VMPool
    from compute.services import autoscalers as autoscaler_services
    from compute.services import pools as pool_services
    from compute.tasks.pools import autoscalers_sweep
    from monitoring.models import VMSample

    pool = pool_services.pool_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=128,
        replicas=1,
        warm=1 if warm_mode else 0,
        warm_mode=warm_mode or "stopped",
    )

    def now() -> VMPool:
        return VMPool.objects.get(pk=pool.pk)

    wait(
        lambda: now().ready_replicas == 1 and now().warm_replicas == (1 if warm_mode else 0),
        300,
        f"{name} ready",
    )
    first = VirtualMachine.objects.get(pool=pool, pool_warm=False)
    autoscaler_services.autoscaler_create(
        actor=None, tenant=tenant, pool=now(), min_replicas=1, max_replicas=4, target=50
    )
    others = VirtualMachine.objects.filter(pool=pool, pool_warm=False).exclude(pk=first.pk)
    start = time.monotonic()
    next_sample = next_tick = start
    while True:
        moment = time.monotonic()
        if moment >= next_sample:
            VMSample.objects.create(
                vm=first,
                time=timezone.now(),
                cpu_percent=90.0,
                memory_used_mib=64.0,
                disk_read_bps=0,
                disk_write_bps=0,
                net_rx_bps=0,
                net_tx_bps=0,
            )
            next_sample += 0.25
        if moment >= next_tick:
            autoscalers_sweep()  # what beat enqueues every ISOTOPE_AUTOSCALER_SECONDS
            next_tick += tick
        if others.filter(phase=Phase.RUNNING).exists():
            done = time.monotonic()
            break
        if moment - start > 300:
            raise RuntimeError(f"{name}: no new member Running after 300 s")
        time.sleep(0.02)
    pool_services.pool_delete(actor=None, pool=now())
    wait(lambda: not VMPool.objects.filter(pk=pool.pk).exists(), 300, f"{name} deleted")
    return done - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,5,10", help="pool sizes, comma separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size and mode")
    parser.add_argument(
        "--tick", type=float, default=1.0, help="autoscaler sweep interval (s) for reaction"
    )
    parser.add_argument(
        "--reaction-repeat", type=int, default=3, help="reaction runs per mode (0: skip)"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]

    database_url = bench_database("isotope_bench_pools")
    setup_django(database_url)
    tenant = seed()
    worker = spawn(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "libvirt,default"]
        + ["-P", "threads", "-c", "4", "-l", "warning"],
        django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING"),
        "pools-worker.log",
    )
    results = []
    reaction: dict = {}
    try:
        time.sleep(2)  # the worker connects to Redis
        for n in sizes:
            row: dict = {"members": n}
            for mode, warm_mode in MODES.items():
                runs = [
                    one_scale_up(tenant, f"{mode}{n}r{i}", n, warm_mode) for i in range(args.repeat)
                ]
                row[f"{mode}_s"] = [round(t, 3) for t in runs]
                row[f"{mode}_median_s"] = round(statistics.median(runs), 3)
            raws = [raw_libvirt(n, f"raw{n}r{i}") for i in range(args.repeat)]
            row["raw_define_start_median_s"] = statistics.median(r["define_start_s"] for r in raws)
            row["raw_start_defined_median_s"] = statistics.median(
                r["start_defined_s"] for r in raws
            )
            row["raw_resume_paused_median_s"] = statistics.median(
                r["resume_paused_s"] for r in raws
            )
            row["cold_over_warm"] = round(row["cold_median_s"] / max(row["warm_median_s"], 1e-6), 2)
            row["cold_over_warm_paused"] = round(
                row["cold_median_s"] / max(row["warm-paused_median_s"], 1e-6), 2
            )
            results.append(row)
        for mode, warm_mode in (("cold", None), ("warm-paused", "paused")):
            if not args.reaction_repeat:
                break
            runs = [
                one_reaction(tenant, f"react-{mode}-{i}", warm_mode, args.tick)
                for i in range(args.reaction_repeat)
            ]
            reaction[mode] = {
                "runs_s": [round(t, 3) for t in runs],
                "median_s": round(statistics.median(runs), 3),
            }
    finally:
        stop(worker)
    print(
        json.dumps(
            {
                "benchmark": "pools",
                "driver": "test:///default",
                "repeat": args.repeat,
                "cores": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "sizes": results,
                "reaction": {"tick_s": args.tick, **reaction},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
