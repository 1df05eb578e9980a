"""Smoke test of the local Kubernetes control plane (``python3 -m tools.infra k8s up``).

Talks to the real kube-apiserver through the official client and VAR/kubeconfig; the
pods "run" on KWOK's fake nodes. Skipped when the cluster is not up, unless
infrastructure is required (CI or ISOTOPE_REQUIRE_INFRA: ``tests.conftest.require``).
"""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.infra.kube import scratch_namespace, wait_for
from tools.infra import k8s

pytestmark = pytest.mark.kubernetes

RUNNING_TIMEOUT = 30.0


def _require_cluster() -> dict:
    state = k8s.status()
    require(bool(state.get("ok")), f"local Kubernetes is not ready: {state.get('reason')}")
    return state


@pytest.fixture(scope="module")
def api():
    state = _require_cluster()
    from kubernetes import config

    return config.new_client_from_config(config_file=state["kubeconfig"])


@pytest.fixture(scope="module")
def core(api):
    from kubernetes import client

    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def namespace(api, core):
    from kubernetes import client

    with scratch_namespace(core, "smoke") as name:
        core.create_namespaced_resource_quota(
            name,
            client.V1ResourceQuota(
                metadata=client.V1ObjectMeta(name="smoke-quota"),
                spec=client.V1ResourceQuotaSpec(
                    hard={
                        "pods": "5",
                        "requests.cpu": "2",
                        "requests.memory": "2Gi",
                        "limits.cpu": "4",
                        "limits.memory": "4Gi",
                    }
                ),
            ),
        )
        core.create_namespaced_limit_range(
            name,
            client.V1LimitRange(
                metadata=client.V1ObjectMeta(name="smoke-defaults"),
                spec=client.V1LimitRangeSpec(
                    limits=[
                        client.V1LimitRangeItem(
                            type="Container",
                            default={"cpu": "200m", "memory": "128Mi"},
                            default_request={"cpu": "100m", "memory": "64Mi"},
                        )
                    ]
                ),
            ),
        )
        # The quota controller must have computed the usage before admission enforces it.
        wait_for(
            "the ResourceQuota status",
            lambda: (
                core.read_namespaced_resource_quota("smoke-quota", name).status.hard or {}
            ).get("pods"),
            30,
        )
        yield name


def _pod(name: str, cpu: str | None = None) -> dict:
    container = {"name": "app", "image": "registry.invalid/isotope/smoke:1"}
    if cpu is not None:
        container["resources"] = {
            "requests": {"cpu": cpu, "memory": "64Mi"},
            "limits": {"cpu": cpu, "memory": "128Mi"},
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container]},
    }


def test_deployment_pods_run_on_fake_nodes(api, core, namespace):
    from kubernetes import client

    labels = {"app": "smoke"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "smoke", "labels": labels},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": "registry.invalid/isotope/smoke:1"}]
                },
            },
        },
    }
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)

    def running():
        pods = core.list_namespaced_pod(namespace, label_selector="app=smoke").items
        live = [
            p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
        ]
        return live if len(live) == 3 else None

    # wait_for fails the test after RUNNING_TIMEOUT. How fast pods start is measured by
    # bench/workloads.py (its raw baseline), not asserted on a shared 2-core machine.
    pods = wait_for("3 Running pods", running, RUNNING_TIMEOUT)
    assert {p.spec.node_name for p in pods} <= set(k8s.NODES)
    for pod in pods:
        assert all(c.ready for c in pod.status.container_statuses)
        assert pod.status.pod_ip
        # LimitRanger filled in the defaults that the quota requires.
        resources = pod.spec.containers[0].resources
        assert resources.requests == {"cpu": "100m", "memory": "64Mi"}
        assert resources.limits == {"cpu": "200m", "memory": "128Mi"}

    def status_ready():
        got = client.AppsV1Api(api).read_namespaced_deployment_status("smoke", namespace).status
        return got.ready_replicas == 3 and got.available_replicas == 3

    wait_for("the Deployment to report 3 ready replicas", status_ready, RUNNING_TIMEOUT)


def test_pod_over_quota_is_refused(core, namespace):
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, _pod("too-big", cpu="3"))
    assert refused.value.status == 403, refused.value.body
    assert "exceeded quota" in refused.value.body

    # A pod that fits is still admitted.
    created = core.create_namespaced_pod(namespace, _pod("fits", cpu="100m"))
    assert created.metadata.name == "fits"
    core.delete_namespaced_pod("fits", namespace)


def test_nodes_are_fake_and_sized(core):
    nodes = {n.metadata.name: n for n in core.list_node(label_selector="type=kwok").items}
    assert set(k8s.NODES) <= set(nodes)
    for name in k8s.NODES:
        allocatable = nodes[name].status.allocatable
        assert allocatable["cpu"] == "8"
        assert allocatable["memory"] == "32Gi"
        assert allocatable["pods"] == "110"
