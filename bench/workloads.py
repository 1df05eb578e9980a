"""Workload benchmark on the local Kubernetes API server with KWOK nodes.

Through the real stack (uvicorn + Django + PostgreSQL + Redis + a Celery worker + the
``watch_kubernetes`` process): N Deployments created through the API by K clients; the
API's accept latency (HTTP 202) and create→all replicas Running per Deployment, as the
portal sees it (the watch sets ``Running`` when every replica is ready). Baseline in
the same run: the same Deployments created directly with the Kubernetes client in a
namespace of their own, timed from the create call until a watch sees every replica
ready. Both namespaces are deleted at the end.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/workloads.py \
        [--deployments 100] [--replicas 1] [--clients 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
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

IMAGE = "registry.invalid/isotope/bench:1"
CPU, MEMORY = "10m", "16Mi"


def setup_django(database_url: str) -> None:
    os.environ.update(django_env(database_url))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(slug: str, deployments: int, replicas: int) -> str:
    from django.contrib.auth import get_user_model

    from compute.services.seed import seed_local_cluster
    from tenants import services
    from tenants.choices import Role

    lines = seed_local_cluster()
    if "not registered" in lines[0]:
        sys.exit(f"the local cluster is not up: {lines[0]}")
    pods = deployments * replicas
    tenant = services.tenant_create(
        actor=None, slug=slug, quota={"cpu": pods, "memory": pods * 64, "pods": pods + 10}
    )
    user = get_user_model().objects.create_user(f"bench-{slug}")
    services.membership_add(actor=None, tenant=tenant, user=user, role=Role.OPERATOR)
    _, key = services.token_create(user=user, name="bench")
    return key


def kube():
    from kubernetes import client, config

    from tools.infra import read_state

    api = config.new_client_from_config(config_file=read_state("k8s")["kubeconfig"])
    return api, client.CoreV1Api(api), client.AppsV1Api(api)


def manifest(name: str, replicas: int) -> dict:
    labels = {"app": name}
    container = {
        "name": "main",
        "image": IMAGE,
        "resources": {
            "requests": {"cpu": CPU, "memory": MEMORY},
            "limits": {"cpu": CPU, "memory": MEMORY},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def raw_kubernetes(n: int, replicas: int, clients: int, timeout: float = 300) -> dict:
    """The same Deployments straight through the Kubernetes client, with a watch."""
    from kubernetes import watch

    api, core, apps = kube()
    namespace = f"isotope-bench-raw-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    deadline = time.monotonic() + 30
    while "default" not in {
        sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items
    }:
        if time.monotonic() > deadline:
            raise RuntimeError("no default ServiceAccount")
        time.sleep(0.2)
    started: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = threading.Event()

    def watcher() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            apps.list_namespaced_deployment, namespace, timeout_seconds=int(timeout)
        ):
            status = event["object"].status
            name = event["object"].metadata.name
            if (status.ready_replicas or 0) >= replicas and name not in ready:
                ready[name] = time.time()
                if len(ready) >= n:
                    stream.stop()
                    break
        done.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(0.5)
    names = iter(range(n))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(names, None)
            if i is None:
                return
            name = f"raw-{i}"
            with lock:
                started[name] = time.time()
            apps.create_namespaced_deployment(namespace, manifest(name, replicas))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.wait(timeout)
    durations = [ready[name] - started[name] for name in ready]
    result = percentiles(durations)
    result["not_running"] = n - len(durations)
    core.delete_namespace(namespace)
    return result


def api_creates(port: int, key: str, slug: str, n: int, replicas: int, clients: int):
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
            name = f"app-{i}"
            body = json.dumps(
                {
                    "metadata": {"name": name},
                    "spec": {
                        "image": IMAGE,
                        "replicas": replicas,
                        "resources": {"requests": {"cpu": CPU, "memory": MEMORY}},
                    },
                }
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/tenants/{slug}/workloads/",
                data=body,
                headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
                method="POST",
            )
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                    ok = response.status == 202
            except Exception as error:  # noqa: BLE001 - counted and reported
                ok = False
                with lock:
                    errors.append(str(error))
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(elapsed)
                    accepted[name] = time.time() - elapsed  # when the request was sent

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = percentiles(latencies)
    result["errors"] = len(errors)
    if errors:
        result["first_error"] = errors[0][:200]
    return result, accepted


def time_to_running(accepted: dict[str, float], timeout: float = 300) -> dict:
    from compute.choices import Phase
    from compute.models import Workload

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Workload.objects.filter(phase=Phase.RUNNING).count() >= len(accepted):
            break
        time.sleep(0.25)
    rows = Workload.objects.filter(phase=Phase.RUNNING).values_list("name", "phase_changed")
    durations = [changed.timestamp() - accepted[name] for name, changed in rows if name in accepted]
    result = percentiles(durations)
    result["not_running"] = len(accepted) - len(durations)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()

    baseline = raw_kubernetes(args.deployments, args.replicas, args.clients)
    time.sleep(5)  # let the baseline's pods start terminating before ours arrive

    database_url = bench_database("isotope_bench_workloads")
    setup_django(database_url)
    slug = f"bench-{uuid.uuid4().hex[:6]}"
    key = seed(slug, args.deployments, args.replicas)
    env = django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING")
    port = free_port()
    python = sys.executable
    processes = [
        spawn(
            [python, "-m", "uvicorn", "portal.asgi:application", "--port", str(port)]
            + ["--log-level", "warning", "--workers", "1"],
            env,
            "workloads-web.log",
        ),
        spawn(
            [python, "-m", "celery", "-A", "portal", "worker", "-Q", "kubernetes,default"]
            + ["-P", "threads", "-c", "4", "-l", "warning"],
            env,
            "workloads-worker.log",
        ),
        spawn([python, "manage.py", "watch_kubernetes"], env, "workloads-watcher.log"),
    ]
    try:
        wait_http(port)
        time.sleep(3)  # the worker connects to Redis, the watch lists
        wall = time.perf_counter()
        accept, accepted = api_creates(
            port, key, slug, args.deployments, args.replicas, args.clients
        )
        accept_wall = time.perf_counter() - wall
        running = time_to_running(accepted)
    finally:
        for process in processes:
            stop(process)
        _, core, _ = kube()
        core.delete_namespace(f"isotope-{slug}")
    print(
        json.dumps(
            {
                "benchmark": "workloads",
                "deployments": args.deployments,
                "replicas": args.replicas,
                "clients": args.clients,
                "api_accept": accept,
                "api_accept_throughput_per_s": round(len(accepted) / accept_wall, 1),
                "create_to_all_replicas_running": running,
                "baseline_raw_kubernetes_create_to_ready": baseline,
                "ratio_p50_vs_raw": round(
                    running.get("p50_ms", 0) / max(baseline.get("p50_ms", 0), 0.001), 2
                ),
                "ratio_p95_vs_raw": round(
                    running.get("p95_ms", 0) / max(baseline.get("p95_ms", 0), 0.001), 2
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
