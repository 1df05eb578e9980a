"""One Kubernetes reconcile pass over N tenants whose objects are all in place.

On the local Kubernetes API server (``python3 -m tools.infra k8s up``): N tenants, each
with its namespace objects, its default security group's NetworkPolicy and W Deployments
(0 replicas: no pods to schedule), provisioned through the portal's own services
(untimed). Then P passes of ``cluster_reconcile`` run in this process, as the worker runs
them every 30 s; each is timed and its requests counted where the Kubernetes client sends
them (``ApiClient.call_api``: method and path), with its SQL statements.

Raw baseline in the same run, after each pass: the floor of a pass, the requests a pass
that calls the API only for what is not in place cannot do without — the version and
the nodes (the cluster check) and one list per kind Isotope manages (its label selector),
sent directly with the ``kubernetes`` client, the bodies parsed as JSON.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/k8s_reconcile.py \
        [--tenants 50] [--workloads 1] [--passes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import bench_database, django_env  # noqa: E402

PREFIX = "bench-rc"
# Kinds a pass needs to see, as (list path, extra selector): what the reconciler lists.
RAW_LISTS = (
    ("/api/v1/namespaces", ""),
    ("/api/v1/resourcequotas", ""),
    ("/api/v1/limitranges", ""),
    ("/apis/networking.k8s.io/v1/networkpolicies", ""),
    ("/api/v1/serviceaccounts", ""),
    ("/apis/rbac.authorization.k8s.io/v1/rolebindings", ""),
    ("/apis/apps/v1/deployments", ""),
    ("/api/v1/pods", ",!pod-template-hash"),
)


def setup_django(database_url: str) -> None:
    # Tasks run inline (a workload's first apply); nothing counts as stuck in the bench.
    os.environ.update(
        django_env(database_url, CELERY_TASK_ALWAYS_EAGER="1", ISOTOPE_K8S_STUCK_SECONDS="86400")
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(tenants: int, workloads: int) -> tuple[object, list[str]]:
    from compute.models import KubernetesCluster
    from compute.services import security_groups as groups
    from compute.services import workloads as workload_services
    from compute.services.clusters import tenant_provision
    from compute.services.seed import seed_local_cluster
    from tenants import services

    lines = seed_local_cluster()
    if "not registered" in lines[0]:
        sys.exit(f"the local cluster is not up: {lines[0]}")
    cluster = KubernetesCluster.objects.get(name="local")
    run = uuid.uuid4().hex[:6]
    namespaces = []
    for index in range(tenants):
        tenant = services.tenant_create(actor=None, slug=f"{PREFIX}-{run}-{index}")
        groups.default_group(tenant)
        tenant_provision(tenant=tenant, cluster=cluster)
        namespaces.append(tenant.namespace)
        for number in range(workloads):
            workload_services.workload_create(
                actor=None,
                tenant=tenant,
                name=f"web-{number}",
                image="registry.invalid/isotope/bench:1",
                replicas=0,
                cpu_request="10m",
                memory_request="16Mi",
            )
    return cluster, namespaces


def counted_pass(cluster) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from kubernetes import client as k8s

    from compute.tasks.kubernetes import cluster_reconcile

    real = k8s.ApiClient.call_api
    calls: Counter = Counter()

    def counted(self, resource_path, method, *args, **kwargs):
        calls[method] += 1
        return real(self, resource_path, method, *args, **kwargs)

    k8s.ApiClient.call_api = counted
    try:
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            counts = cluster_reconcile(cluster.pk)
            wall = time.perf_counter() - start
    finally:
        k8s.ApiClient.call_api = real
    return {
        "wall_ms": round(wall * 1000, 1),
        "api_calls": sum(calls.values()),
        "by_method": dict(calls),
        "sql": len(queries.captured_queries),
        "counts": counts,
    }


def raw_pass(api) -> dict:
    """The floor of a pass: version, nodes, one list per kind, straight from the client."""
    from compute.backends.kubernetes import manifests

    selector = f"{manifests.MANAGED_BY}={manifests.MANAGER}"
    requests = [("/version", []), ("/api/v1/nodes", [])] + [
        (path, [("labelSelector", selector + extra), ("limit", "500")]) for path, extra in RAW_LISTS
    ]
    start = time.perf_counter()
    items = 0
    for path, query in requests:
        response = api.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=10,
        )
        items += len(json.loads(response.data).get("items") or [])
    return {
        "wall_ms": round((time.perf_counter() - start) * 1000, 1),
        "api_calls": len(requests),
        "items": items,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--workloads", type=int, default=1, help="Deployments per tenant")
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    setup_django(bench_database("isotope_bench_k8s_reconcile"))

    from kubernetes import client as k8s

    from compute.backends.kubernetes.backend import api_client
    from compute.services.clusters import cluster_kubeconfig

    started = time.perf_counter()
    cluster, namespaces = seed(args.tenants, args.workloads)
    setup_s = round(time.perf_counter() - started, 1)
    api = api_client(cluster_kubeconfig(cluster))
    portal, raw = [], []
    try:
        for _ in range(args.passes):
            portal.append(counted_pass(cluster))
            raw.append(raw_pass(api))
    finally:
        core = k8s.CoreV1Api(api)
        for namespace in namespaces:
            core.delete_namespace(namespace)  # without waiting

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    summary = {
        "portal_wall_ms_p50": median(portal, "wall_ms"),
        "portal_api_calls_p50": median(portal, "api_calls"),
        "portal_sql_p50": median(portal, "sql"),
        "raw_wall_ms_p50": median(raw, "wall_ms"),
        "raw_api_calls": raw[0]["api_calls"],
    }
    summary["wall_ratio_p50"] = round(summary["portal_wall_ms_p50"] / summary["raw_wall_ms_p50"], 2)
    print(
        json.dumps(
            {
                "tenants": args.tenants,
                "workloads_per_tenant": args.workloads,
                "setup_s": setup_s,
                "passes": portal,
                "raw": raw,
                "summary": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
