"""Workload benchmark on the local Kubernetes API server with KWOK nodes.

Through the real stack (uvicorn + Django + PostgreSQL + Redis + a Celery worker + the
``watch_kubernetes`` process, all three with production settings: ``DEBUG`` off as
``deploy/`` runs them, since 2026-12-05): N Deployments created through the API by K clients; the
API's accept latency (HTTP 202) and create→all replicas Running per Deployment, as the
portal sees it (the watch sets ``Running`` when every replica is ready). Baseline in
the same run: the same Deployments — the very manifests the portal applied in the round
before, moved to a namespace of their own that first gets the same namespace objects
(quota, limits, policies, the workloads' service account; untimed) — created directly
with the Kubernetes client by K threads, timed from the create call until a watch sees
every replica ready.

Rounds alternate, portal then raw (``--rounds 2``: portal, raw, portal, raw), each in a
fresh namespace. Between them nothing of the previous run is left: the portal's
workloads are deleted through its API and the run waits until their pods are gone; the
raw namespace is deleted and the run waits until it is gone. The JSON has every round,
the medians per side and the ratios of those medians.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/workloads.py \
        [--deployments 100] [--replicas 1] [--clients 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    PRODUCTION,
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
    # The cluster registered here has its kubeconfig encrypted with SECRET_KEY: the
    # worker and the watch must read it with the same key.
    os.environ["SECRET_KEY"] = PRODUCTION["SECRET_KEY"]
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


def portal_manifests(slug: str, namespace: str) -> tuple[list[dict], list[dict]]:
    """What the portal applied for tenant ``slug``, moved to ``namespace``: the tenant's
    namespace objects (ResourceQuota, LimitRange, policies, the workloads' service
    account; the Namespace itself left out) and the Deployments its worker rendered
    from each workload row."""
    import dataclasses

    from compute.backends.kubernetes import manifests
    from compute.models import Workload
    from compute.services.clusters import tenant_spec
    from compute.services.workloads import workload_spec
    from tenants.models import Tenant

    spec = dataclasses.replace(tenant_spec(Tenant.objects.get(slug=slug)), namespace=namespace)
    setup = [obj for obj in manifests.tenant_objects(spec) if obj["kind"] != "Namespace"]
    deployments = []
    for workload in Workload.objects.filter(tenant__slug=slug).select_related("tenant"):
        body = manifests.deployment(workload_spec(workload))
        body["metadata"]["namespace"] = namespace
        deployments.append(body)
    return setup, deployments


def portal_delete_all(port: int, key: str, slug: str, names: list[str]) -> int:
    """Delete the tenant's workloads through the API, as a user would; returns how many
    were not accepted (HTTP 202/204)."""
    refused = 0
    for name in names:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/tenants/{slug}/workloads/{name}/",
            headers={"Authorization": f"Token {key}"},
            method="DELETE",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                refused += response.status not in (202, 204)
        except urllib.error.HTTPError:
            refused += 1
    return refused


def pods_gone(core, namespace: str, timeout: float = 300) -> float:
    """Wait until ``namespace`` has no pods; returns the seconds waited."""
    start = time.monotonic()
    while core.list_namespaced_pod(namespace).items:
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"pods still in {namespace} after {timeout:.0f} s")
        time.sleep(0.5)
    return round(time.monotonic() - start, 1)


def namespace_create(core, namespace: str) -> None:
    core.create_namespace({"metadata": {"name": namespace}})
    deadline = time.monotonic() + 30
    while "default" not in {
        sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items
    }:
        if time.monotonic() > deadline:
            raise RuntimeError("no default ServiceAccount")
        time.sleep(0.2)


def namespace_gone(core, namespace: str, timeout: float = 300) -> float:
    """Delete ``namespace`` and wait until the API no longer has it (its pods are gone
    then too); returns the seconds waited."""
    from kubernetes.client.exceptions import ApiException

    start = time.monotonic()
    try:
        core.delete_namespace(namespace)
    except ApiException as error:
        if error.status != 404:
            raise
    while time.monotonic() - start < timeout:
        try:
            core.read_namespace(namespace)
        except ApiException as error:
            if error.status == 404:
                return round(time.monotonic() - start, 1)
            raise
        time.sleep(0.5)
    raise RuntimeError(f"namespace {namespace} still there after {timeout:.0f} s")


def raw_kubernetes(
    setup: list[dict], bodies: list[dict], replicas: int, clients: int, timeout: float = 300
) -> dict:
    """``bodies`` straight through the Kubernetes client in their namespace, prepared
    with ``setup`` first (untimed), with a watch for their readiness."""
    from kubernetes import utils, watch

    api, core, apps = kube()
    namespace = bodies[0]["metadata"]["namespace"]
    n = len(bodies)
    namespace_create(core, namespace)
    for obj in setup:
        utils.create_from_dict(api, obj, namespace=namespace)
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
    queue = iter(bodies)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                body = next(queue, None)
                if body is None:
                    return
                started[body["metadata"]["name"]] = time.time()
            apps.create_namespaced_deployment(namespace, body)

    wall = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    create_wall = time.perf_counter() - wall
    done.wait(timeout)
    durations = [ready[name] - started[name] for name in ready]
    result = percentiles(durations)
    result["not_running"] = n - len(durations)
    result["create_throughput_per_s"] = round(n / create_wall, 1)
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


def time_to_running(slug: str, accepted: dict[str, float], timeout: float = 300) -> dict:
    from compute.choices import Phase
    from compute.models import Workload

    running = Workload.objects.filter(tenant__slug=slug, phase=Phase.RUNNING)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.count() >= len(accepted):
            break
        time.sleep(0.25)
    rows = running.values_list("name", "phase_changed")
    durations = [changed.timestamp() - accepted[name] for name, changed in rows if name in accepted]
    result = percentiles(durations)
    result["not_running"] = len(accepted) - len(durations)
    return result


def median_of(rounds: list[dict], side: str, field: str) -> float:
    return round(statistics.median(r[field] for r in rounds if r["side"] == side), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="portal + raw pairs")
    args = parser.parse_args()

    database_url = bench_database("isotope_bench_workloads")
    setup_django(database_url)
    # The cluster is registered before the watch starts: a watch that finds no cluster
    # looks again only after a while, and the first round would time that wait.
    from compute.services.seed import seed_local_cluster

    lines = seed_local_cluster()
    if "not registered" in lines[0]:
        sys.exit(f"the local cluster is not up: {lines[0]}")
    env = django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING", **PRODUCTION)
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
    from tenants.models import Tenant

    _, core, _ = kube()
    rounds: list[dict] = []
    portal_namespaces: list[str] = []
    previous = ""
    try:
        wait_http(port)
        time.sleep(3)  # the worker connects to Redis, the watch lists
        for number in range(1, args.rounds + 1):
            slug = f"bench-{uuid.uuid4().hex[:6]}"
            key = seed(slug, args.deployments, args.replicas)
            namespace = Tenant.objects.get(slug=slug).namespace
            portal_namespaces.append(namespace)
            waited = namespace_gone(core, previous) if previous else 0.0
            wall = time.perf_counter()
            accept, accepted = api_creates(
                port, key, slug, args.deployments, args.replicas, args.clients
            )
            accept_wall = time.perf_counter() - wall
            running = time_to_running(slug, accepted)
            rounds.append(
                {
                    "round": number,
                    "side": "portal",
                    "waited_for_previous_pods_s": waited,
                    "api_accept": accept,
                    "api_accept_throughput_per_s": round(len(accepted) / accept_wall, 1),
                    "create_to_all_replicas_running": running,
                    "p50_ms": running.get("p50_ms", 0),
                    "p95_ms": running.get("p95_ms", 0),
                }
            )
            # No tenant's namespace (outside ISOTOPE_K8S_NAMESPACE_PREFIX's default): the
            # portal's watch ignores what happens there.
            setup, bodies = portal_manifests(slug, f"bench-raw-{uuid.uuid4().hex[:6]}")
            refused = portal_delete_all(port, key, slug, sorted(accepted))
            waited = pods_gone(core, namespace)
            raw = raw_kubernetes(setup, bodies, args.replicas, args.clients)
            previous = bodies[0]["metadata"]["namespace"]
            rounds.append(
                {
                    "round": number,
                    "side": "raw",
                    "waited_for_previous_pods_s": waited,
                    "portal_deletes_refused": refused,
                    "create_to_ready": raw,
                    "p50_ms": raw.get("p50_ms", 0),
                    "p95_ms": raw.get("p95_ms", 0),
                }
            )
    finally:
        for process in processes:
            stop(process)
        for gone in filter(None, [previous, *portal_namespaces]):
            namespace_gone(core, gone)
    summary = {}
    for field in ("p50_ms", "p95_ms"):
        portal, raw = median_of(rounds, "portal", field), median_of(rounds, "raw", field)
        summary[f"portal_{field}_median"] = portal
        summary[f"raw_{field}_median"] = raw
        summary[f"ratio_{field.removesuffix('_ms')}_vs_raw"] = round(portal / max(raw, 0.001), 2)
    pairs = [(rounds[i], rounds[i + 1]) for i in range(0, len(rounds), 2)]
    summary["ratio_p50_per_round"] = [
        round(p["p50_ms"] / max(r["p50_ms"], 0.001), 2) for p, r in pairs
    ]
    print(
        json.dumps(
            {
                "benchmark": "workloads",
                "deployments": args.deployments,
                "replicas": args.replicas,
                "clients": args.clients,
                "order": "portal, raw, portal, raw…; a raw run creates its round's "
                "portal manifests (namespace objects untimed, then the Deployments); "
                "the portal's workloads are deleted through its API and their pods gone "
                "before the raw run, the raw namespace is gone before the next portal run",
                "rounds": rounds,
                "summary": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
