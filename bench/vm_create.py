"""VM create benchmark on libvirt's test driver.

Measures, through the real stack (uvicorn + Django + PostgreSQL + Redis + a Celery
worker): the API's accept latency (HTTP 202) with K concurrent clients, and
create→Running per VM. Baseline in the same run: the same number of raw libvirt
define+start calls on a test-driver connection. Also: the cost of one quota check with
10 and with 10,000 existing reservations.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/vm_create.py \
        [--vms 200] [--clients 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    bench_database,
    django_env,
    free_port,
    percentiles,
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


def api_creates(port: int, key: str, n: int, clients: int) -> tuple[dict, dict[str, float]]:
    accepted: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    names = iter(range(n))

    def client() -> None:
        while True:
            with lock:
                i = next(names, None)
            if i is None:
                return
            name = f"vm-{i}"
            body = json.dumps(
                {
                    "metadata": {"name": name},
                    "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 64},
                }
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/tenants/bench/virtualmachines/",
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
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = percentiles(latencies)
    result["errors"] = len(errors)
    if errors:
        result["first_error"] = errors[0][:200]
    return result, accepted


def time_to_running(accepted: dict[str, float], timeout: float = 120) -> dict:
    from compute.choices import Phase
    from compute.models import VirtualMachine

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = VirtualMachine.objects.filter(phase=Phase.RUNNING).count()
        if running >= len(accepted):
            break
        time.sleep(0.2)
    rows = VirtualMachine.objects.filter(phase=Phase.RUNNING).values_list(
        "name", "created", "phase_changed"
    )
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--web-workers", type=int, default=1, help="uvicorn processes")
    args = parser.parse_args()

    database_url = bench_database("isotope_bench_vm")
    setup_django(database_url)
    key = seed(args.vms)
    env = django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING")
    port = free_port()
    python = sys.executable
    web = spawn(
        [python, "-m", "uvicorn", "portal.asgi:application", "--port", str(port)]
        + ["--log-level", "warning", "--workers", str(args.web_workers)],
        env,
        "vm_create-web.log",
    )
    worker = spawn(
        [python, "-m", "celery", "-A", "portal", "worker", "-Q", "libvirt,default"]
        + ["-P", "threads", "-c", "4", "-l", "warning"],
        env,
        "vm_create-worker.log",
    )
    try:
        wait_http(port)
        time.sleep(2)  # the worker connects to Redis
        wall = time.perf_counter()
        accept, accepted = api_creates(port, key, args.vms, args.clients)
        accept_wall = time.perf_counter() - wall
        running = time_to_running(accepted)
    finally:
        stop(web)
        stop(worker)
    baseline = raw_libvirt(args.vms)
    quota = {"10": quota_check_cost(10), "10000": quota_check_cost(10_000)}
    print(
        json.dumps(
            {
                "benchmark": "vm_create",
                "vms": args.vms,
                "clients": args.clients,
                "web_workers": args.web_workers,
                "api_accept": accept,
                "api_accept_throughput_per_s": round(len(accepted) / accept_wall, 1),
                "create_to_running": running,
                "baseline_raw_libvirt_define_start": baseline,
                "ratio_create_to_running_p50_vs_raw": round(
                    running.get("p50_ms", 0) / max(baseline["p50_ms"], 0.001), 1
                ),
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
