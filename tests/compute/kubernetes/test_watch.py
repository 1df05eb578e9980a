"""The watch keeps the portal right across an API server restart and a 410 relist."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compute.choices import Phase
from compute.models import KubernetesCluster, Workload
from compute.services import workloads as services
from tests.conftest import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]


def state(tenant, name: str) -> tuple:
    w = Workload.objects.get(tenant=tenant, name=name)
    return (w.phase, w.ready_replicas, w.replicas)


def restart_api_server() -> None:
    """Stop only kube-apiserver (other engineers share the cluster), then ``k8s up``
    starts it again and restarts its clients."""
    pid = json.loads((ROOT / "var/k8s/run/kube-apiserver.json").read_text())["pid"]
    os.kill(pid, signal.SIGTERM)
    # A terminating API server stops listening at once but lingers up to 60 s for open
    # watches; ``up`` would find it still running. Make sure it is gone.
    deadline = time.monotonic() + 3
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.1)
    time.sleep(6)  # longer than ISOTOPE_K8S_UNKNOWN_AFTER: the portal notices
    subprocess.run(
        [sys.executable, "-m", "tools.infra", "k8s", "up"], cwd=ROOT, check=True, timeout=180
    )


def _alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    except FileNotFoundError:
        return False


def test_the_watch_survives_an_api_server_restart(make_tenant, celery_worker, watcher):
    tenant = make_tenant()
    workload = services.workload_create(
        actor=None, tenant=tenant, name="steady", image="nginx:1.27", replicas=2
    )
    wait_for(lambda: state(tenant, "steady") == (Phase.RUNNING, 2, 2), 60, 0.2)
    reconnects = sum(w.reconnects for w in watcher.watches.values())

    restart_api_server()

    assert sum(w.reconnects for w in watcher.watches.values()) > reconnects
    # While it was gone the workload turned Unknown; the relist brings it back.
    workload.refresh_from_db()
    assert workload.phase in (Phase.UNKNOWN, Phase.RUNNING)
    wait_for(lambda: state(tenant, "steady") == (Phase.RUNNING, 2, 2), 90, 0.2)
    assert KubernetesCluster.objects.get(pk=watcher.cluster.pk).reachable
    # A change after the restart still arrives through the watch.
    services.workload_scale(actor=None, workload=workload, replicas=3)
    wait_for(lambda: state(tenant, "steady") == (Phase.RUNNING, 3, 3), 90, 0.2)


def test_an_expired_watch_relists_without_missing_a_change(make_tenant, celery_worker, watcher):
    tenant = make_tenant()
    workload = services.workload_create(
        actor=None, tenant=tenant, name="relist", image="nginx:1.27", replicas=1
    )
    wait_for(lambda: state(tenant, "relist") == (Phase.RUNNING, 1, 1), 60, 0.2)
    deployments = watcher.watches["deployments"]
    relists = deployments.relists

    # The next watch request starts from a version the server has forgotten: 410 Gone.
    deployments.interrupt(resource_version="1")
    services.workload_scale(actor=None, workload=workload, replicas=3)

    wait_for(lambda: state(tenant, "relist") == (Phase.RUNNING, 3, 3), 60, 0.2)
    assert deployments.relists > relists
