"""Fixtures for the ``kubernetes`` tier: the local API server (KWOK nodes) registered as
the default cluster, a tenant with a unique slug per test (its namespace is deleted
afterwards), the raw client, and the cluster watch running in this process."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from tenants import services as tenant_services
from tenants.choices import Role
from tests.conftest import PASSWORD, require


def k8s_state() -> dict:
    from tools.infra import k8s

    return k8s.status()


@pytest.fixture
def cluster(db):
    """The local cluster as the default KubernetesCluster (skips when it is down)."""
    state = k8s_state()
    require(bool(state.get("ok")), f"local Kubernetes is not ready: {state.get('reason')}")
    from compute.services.clusters import cluster_check, cluster_register

    path = Path(state["kubeconfig"])
    cluster = cluster_register(
        actor=None, name="local", kubeconfig=path.read_text(), default=True, base=path.parent
    )
    return cluster_check(cluster)


@pytest.fixture
def kube(cluster):
    """Raw clients of the same cluster: ``kube.core``, ``kube.apps``, ``kube.net``."""
    from kubernetes import client

    from compute.backends.kubernetes.backend import api_client
    from compute.services.clusters import cluster_kubeconfig

    api = api_client(cluster_kubeconfig(cluster))

    class Kube:
        core = client.CoreV1Api(api)
        apps = client.AppsV1Api(api)
        net = client.NetworkingV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)

    Kube.api = api
    return Kube


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_tenant(cluster, kube):
    """``make_tenant(quota=None)``: a tenant with a random slug, bob as operator and
    carol as viewer; its namespace is deleted (without waiting) after the test."""
    made = []
    User = get_user_model()

    def make(quota: dict | None = None, prefix: str = "k8s"):
        tenant = tenant_services.tenant_create(actor=None, slug=unique_slug(prefix), quota=quota)
        for username, role in (("bob", Role.OPERATOR), ("carol", Role.VIEWER)):
            user = User.objects.filter(username=username).first() or User.objects.create_user(
                username, f"{username}@example.com", PASSWORD
            )
            tenant_services.membership_add(actor=None, tenant=tenant, user=user, role=role)
        made.append(tenant.namespace)
        return tenant

    yield make
    from kubernetes.client.rest import ApiException

    for namespace in made:
        try:
            kube.core.delete_namespace(namespace)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def watcher(cluster, transactional_db):
    """The cluster watch (as ``manage.py watch_kubernetes`` runs it), in this process."""
    from compute.services.watch import ClusterWatcher

    watch = ClusterWatcher(cluster)
    watch.start()
    deadline = time.monotonic() + 20
    while any(w.resource_version is None for w in watch.watches.values()):
        if time.monotonic() > deadline:
            pytest.fail("the watches did not list within 20 s")
        time.sleep(0.1)
    yield watch
    watch.stop()
