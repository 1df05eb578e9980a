"""The watch keeps the portal right across a lost API server and a 410 relist.

The API server is shared with other runs, so it is never stopped here: the cluster is
registered through a ``TcpProxy`` this module owns, and "the server goes away" is the
proxy cutting every connection and refusing new ones until it is restored."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings

from compute.choices import Phase
from compute.models import KubernetesCluster, Workload
from compute.services import workloads as services
from compute.services.clusters import cluster_check, cluster_kubeconfig, cluster_register
from tests.compute.kubernetes.conftest import k8s_state
from tests.conftest import require, wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]


def state(tenant, name: str) -> tuple:
    w = Workload.objects.get(tenant=tenant, name=name)
    return (w.phase, w.ready_replicas, w.replicas)


@pytest.fixture
def proxy():
    """A proxy in front of the shared API server that only this test cuts."""
    server = urlsplit(k8s_state().get("server", ""))
    require(bool(server.port), f"local Kubernetes is not ready: {k8s_state().get('reason')}")
    proxy = TcpProxy(server.hostname, server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def cluster(cluster, proxy):
    """The tier's local cluster, re-registered to reach the API server through ``proxy``
    (so the watcher, the Celery tasks and ``kube`` all go through it)."""
    kubeconfig = yaml.safe_load(cluster_kubeconfig(cluster))
    for entry in kubeconfig["clusters"]:
        server = urlsplit(entry["cluster"]["server"])
        entry["cluster"]["server"] = f"https://{server.hostname}:{proxy.port}"
    proxied = cluster_register(
        actor=None, name=cluster.name, kubeconfig=yaml.safe_dump(kubeconfig), default=True
    )
    proxied = cluster_check(proxied)
    assert proxied.reachable, proxied.message
    return proxied


def test_workloads_turn_unknown_while_the_api_server_is_unreachable_then_recover(
    make_tenant, celery_worker, watcher, proxy
):
    assert proxy.accepted > 0, "the watch does not go through the proxy"
    tenant = make_tenant()
    workload = services.workload_create(
        actor=None, tenant=tenant, name="steady", image="nginx:1.27", replicas=2
    )
    wait_for(lambda: state(tenant, "steady") == (Phase.RUNNING, 2, 2), 60, 0.2)
    reconnects = sum(w.reconnects for w in watcher.watches.values())

    proxy.cut()
    try:
        # The cut lasts until the portal has noticed: Unknown after ISOTOPE_K8S_UNKNOWN_AFTER
        # (5 s), observed rather than guessed. The bound only ends a broken run.
        grace = float(settings.ISOTOPE_K8S_UNKNOWN_AFTER)
        wait_for(
            lambda: state(tenant, "steady")[0] == Phase.UNKNOWN,
            grace + 60,
            0.2,
            message="the workload never turned Unknown while the API server was unreachable",
        )
        workload.refresh_from_db()
        assert "unreachable" in workload.message
        cluster = KubernetesCluster.objects.get(pk=watcher.cluster.pk)
        assert not cluster.reachable
        assert sum(w.reconnects for w in watcher.watches.values()) > reconnects
        assert proxy.refused > 0, "nobody tried to reconnect during the cut"
    finally:
        proxy.restore()  # also when failing: the teardown deletes the namespace through it

    # Reconnecting (backoff up to 15 s) relists: the phase is derived again.
    wait_for(lambda: state(tenant, "steady") == (Phase.RUNNING, 2, 2), 90, 0.2)
    wait_for(lambda: KubernetesCluster.objects.get(pk=cluster.pk).reachable, 30, 0.2)
    # A change after the outage still arrives through the watch.
    workload.refresh_from_db()
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
