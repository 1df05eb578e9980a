"""The metrics API of the local cluster and a real HorizontalPodAutoscaler on it.

metrics-server (built from its Go module, started by ``python3 -m tools.infra k8s up``)
scrapes KWOK's simulated kubelet endpoint, where a pod's usage is its annotations
``isotope.dev/kwok-cpu-usage`` / ``isotope.dev/kwok-memory-usage``
(``tools/k8s/kwok/metrics.yaml``); kube-apiserver serves it as ``metrics.k8s.io/v1beta1``
and the controller-manager's HPA controller scales on it. Every object lives in a
scratch namespace that is deleted afterwards. Skipped when the cluster or its metrics
API is not up, unless infrastructure is required (``tests.conftest.require``).
"""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.infra.kube import scratch_namespace, wait_for
from tools.infra import k8s

pytestmark = pytest.mark.kubernetes

CPU = "isotope.dev/kwok-cpu-usage"
MEMORY = "isotope.dev/kwok-memory-usage"
# metrics-server needs two scrapes of a new pod (10 s apart, k8s.METRIC_RESOLUTION)
# before it reports a rate; the rest is slack for a busy shared machine.
METRICS_TIMEOUT = 90.0
IMAGE = "registry.invalid/isotope/metrics:1"  # never pulled: KWOK runs no container


@pytest.fixture(scope="module")
def api():
    state = k8s.status()
    require(bool(state.get("ok")), f"local Kubernetes or its metrics API is not ready: {state}")
    from kubernetes import config

    return config.new_client_from_config(config_file=state["kubeconfig"])


@pytest.fixture
def namespace(api):
    from kubernetes import client

    with scratch_namespace(client.CoreV1Api(api), "metrics", delete_timeout=90) as name:
        yield name


def _container(name: str, cpu_request: str | None = None) -> dict:
    container = {"name": name, "image": IMAGE}
    if cpu_request:
        container["resources"] = {"requests": {"cpu": cpu_request, "memory": "32Mi"}}
    return container


def _pod_metrics(api, namespace: str, name: str) -> dict | None:
    """The pod's PodMetrics from metrics.k8s.io, None while metrics-server has none."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", namespace, "pods", name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _usage(metrics: dict | None, resource: str) -> dict[str, float]:
    """{container: usage} of one resource, in cores or bytes."""
    from kubernetes.utils import parse_quantity

    if not metrics:
        return {}
    return {c["name"]: float(parse_quantity(c["usage"][resource])) for c in metrics["containers"]}


def _near(value: float, expected: float, tolerance: float = 0.1) -> bool:
    """KWOK integrates usage between scrapes; metrics-server's rate may be a little off."""
    return abs(value - expected) <= tolerance * expected


def _reports(api, namespace, name, resource, expected: dict[str, float]):
    def check():
        usage = _usage(_pod_metrics(api, namespace, name), resource)
        if usage.keys() == expected.keys() and all(
            _near(usage[c], want) for c, want in expected.items()
        ):
            return usage
        return None

    return check


def test_pod_usage_follows_its_annotations(api, namespace):
    from kubernetes import client

    core = client.CoreV1Api(api)
    pods = {
        "busy": ({CPU: "250m", MEMORY: "64Mi"}, ["app"]),
        "split": ({CPU: "300m", MEMORY: "100Mi"}, ["app", "sidecar"]),
        "idle": ({}, ["app"]),
    }
    for name, (notes, containers) in pods.items():
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "annotations": notes},
                "spec": {"containers": [_container(c) for c in containers]},
            },
        )

    mib = 2**20
    wait_for(
        "busy's CPU through metrics.k8s.io",
        _reports(api, namespace, "busy", "cpu", {"app": 0.25}),
        METRICS_TIMEOUT,
    )
    assert _usage(_pod_metrics(api, namespace, "busy"), "memory") == {"app": 64 * mib}
    # A pod's amount is split over its containers: the pod's sum is the annotation.
    wait_for(
        "split's CPU",
        _reports(api, namespace, "split", "cpu", {"app": 0.15, "sidecar": 0.15}),
        METRICS_TIMEOUT,
    )
    assert sum(_usage(_pod_metrics(api, namespace, "split"), "memory").values()) == 100 * mib
    # No annotation: the small defaults.
    wait_for("idle's default CPU", _reports(api, namespace, "idle", "cpu", {"app": 0.001}), 30)
    assert _usage(_pod_metrics(api, namespace, "idle"), "memory") == {"app": 1 * mib}

    # A changed annotation shows within about one metric resolution (two, to be safe).
    core.patch_namespaced_pod(
        "busy", namespace, {"metadata": {"annotations": {CPU: "1500m", MEMORY: "200Mi"}}}
    )
    wait_for("busy's new CPU", _reports(api, namespace, "busy", "cpu", {"app": 1.5}), 25)
    assert _usage(_pod_metrics(api, namespace, "busy"), "memory") == {"app": 200 * mib}

    # A node reports the sum of its pods (other tests' pods may share it).
    node = core.read_namespaced_pod("busy", namespace).spec.node_name
    from kubernetes.utils import parse_quantity

    node_metrics = client.CustomObjectsApi(api).get_cluster_custom_object(
        "metrics.k8s.io", "v1beta1", "nodes", node
    )
    assert float(parse_quantity(node_metrics["usage"]["cpu"])) >= 1.5 * 0.9
    assert float(parse_quantity(node_metrics["usage"]["memory"])) >= 200 * mib


def test_hpa_scales_a_deployment_on_simulated_cpu(api, namespace):
    """1 replica requesting 100m and using 200m against a 50 % target: the HPA goes to its
    maximum, 4; once the pods use 10m it comes back to 1 (no scale-down window)."""
    from kubernetes import client

    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    autoscaling = client.AutoscalingV2Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels, "annotations": {CPU: "200m"}},
                    "spec": {"containers": [_container("app", cpu_request="100m")]},
                },
            },
        },
    )
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
        },
    )

    def running_pods():
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return [
            p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
        ]

    def hpa():
        return autoscaling.read_namespaced_horizontal_pod_autoscaler_status("web", namespace)

    def scaled_to(count: int):
        def check():
            status = hpa().status
            spec = apps.read_namespaced_deployment("web", namespace).spec
            if spec.replicas == count and len(running_pods()) == count:
                return status
            return None

        return check

    up = wait_for("the HPA to scale web to 4", scaled_to(4), 150)
    assert up.desired_replicas == 4
    current = up.current_metrics[0].resource.current
    assert current.average_utilization >= 100, current  # 200m of 100m, before the new pods

    # The usage drops: annotate the running pods (their template keeps 200m; the HPA
    # removes pods and makes none, so the template is not consulted again).
    for pod in running_pods():
        core.patch_namespaced_pod(
            pod.metadata.name, namespace, {"metadata": {"annotations": {CPU: "10m"}}}
        )
    down = wait_for("the HPA to scale web back to 1", scaled_to(1), 150)
    assert down.desired_replicas == 1
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=HorizontalPodAutoscaler"
    ).items
    reasons = [e.message for e in events if e.reason == "SuccessfulRescale"]
    assert any("New size: 4" in m for m in reasons), reasons
    assert any("New size: 1" in m for m in reasons), reasons


def test_up_names_what_the_metrics_api_lacks(api, monkeypatch):
    """``status``/``up`` say why the metrics API is not there (read only: an APIService
    that does not exist; the shared cluster's own stays as it is)."""
    monkeypatch.setattr(k8s, "METRICS_API", "v1.absent.isotope.dev")
    ok, reason = k8s.metrics_api_status()
    assert not ok
    assert reason == "no APIService v1.absent.isotope.dev (run: python3 -m tools.infra k8s up)"
    monkeypatch.setattr(k8s, "METRICS_API_TIMEOUT", 1.0)
    with pytest.raises(RuntimeError) as waited:
        k8s._wait_metrics_api()
    assert str(waited.value).startswith("timed out after 1s waiting for the metrics API")
    assert str(waited.value).endswith(f"; last: {reason}")
