"""Autoscalers of Deployments on the real API server: creating, changing and deleting
an Isotope autoscaler creates, updates and deletes a HorizontalPodAutoscaler with the
right spec; the Deployment's replicas pass to the HPA and back; the HPA's status shows
on the autoscaler; deleting the Deployment deletes its HPA. With metrics-server and
KWOK's simulated usage in the cluster, the HPA scales a busy Deployment up and its
decision appears in the portal's events (skipped, saying so, where the metrics API is
not available)."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from compute.choices import Phase
from compute.models import Autoscaler, Workload
from compute.services import autoscalers as autoscaler_services
from compute.services import workloads as services
from monitoring.models import Event
from portal.exceptions import Conflict
from tenants.models import Quota
from tests.conftest import require, wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]

RUNNING = 60
METRICS_API = "v1beta1.metrics.k8s.io"
CPU_USAGE = "isotope.dev/kwok-cpu-usage"


def hpa_of(kube, tenant, name: str):
    try:
        return client.AutoscalingV2Api(kube.api).read_namespaced_horizontal_pod_autoscaler(
            name, tenant.namespace
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def deployment_replicas(kube, tenant, name: str) -> int:
    return kube.apps.read_namespaced_deployment(name, tenant.namespace).spec.replicas


def running(tenant, name: str, replicas: int) -> bool:
    w = Workload.objects.filter(tenant=tenant, name=name).first()
    return bool(w) and (w.phase, w.ready_replicas) == (Phase.RUNNING, replicas)


def pods_charged(tenant) -> int:
    return Quota.objects.get(tenant=tenant).used_pods


def deploy(tenant, name="web", replicas=2, cpu_request="100m"):
    return services.workload_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="registry.invalid/isotope/web:1",
        replicas=replicas,
        cpu_request=cpu_request,
        memory_request="64Mi",
    )


def test_the_hpa_follows_the_autoscaler_and_its_status_shows_in_the_portal(
    make_tenant, kube, celery_worker, watcher
):
    tenant = make_tenant()
    workload = deploy(tenant)
    wait_for(lambda: running(tenant, "web", 2), RUNNING, 0.2)

    autoscaler = autoscaler_services.autoscaler_create(
        actor=None,
        tenant=tenant,
        workload=workload,
        name="web-hpa",
        min_replicas=2,
        max_replicas=4,
        target=50,
        scale_down_window_seconds=60,
        scale_down_percent=50,
    )
    assert pods_charged(tenant) == 4  # the maximum, held while it lives
    hpa = wait_for(lambda: hpa_of(kube, tenant, "web-hpa"), 30, 0.2)
    assert hpa.metadata.labels["isotope.dev/workload"] == "web"
    assert hpa.spec.scale_target_ref.kind == "Deployment"
    assert hpa.spec.scale_target_ref.name == "web"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 4)
    metric = hpa.spec.metrics[0].resource
    assert metric.name == "cpu" and metric.target.average_utilization == 50
    down = hpa.spec.behavior.scale_down
    assert down.stabilization_window_seconds == 60
    assert [(p.type, p.value, p.period_seconds) for p in down.policies] == [("Percent", 50, 15)]
    # The Deployment kept its size while its replicas passed to the HPA, and Isotope's
    # field manager no longer owns them.
    assert deployment_replicas(kube, tenant, "web") == 2
    deployment = kube.apps.read_namespaced_deployment("web", tenant.namespace)
    owners = [
        m.manager
        for m in deployment.metadata.managed_fields or []
        if m.operation == "Apply" and "f:replicas" in str(m.fields_v1)
    ]
    assert "isotope" not in owners

    # The HPA controller's status (here without metrics, or with them) reaches the portal.
    def status_seen():
        row = Autoscaler.objects.get(pk=autoscaler.pk)
        return row if row.conditions and row.reason else None

    row = wait_for(status_seen, 60, 0.5)
    assert {c["type"] for c in row.conditions} >= {"AbleToScale"}
    assert row.current_replicas == 2
    assert Event.objects.filter(
        tenant=tenant, kind="autoscaler", name="web-hpa", source="kubernetes"
    ).exists()

    # While autoscaled, a scale by hand is refused with the reason.
    with pytest.raises(Conflict):
        services.workload_scale(actor=None, workload=workload, replicas=3)

    autoscaler_services.autoscaler_update(
        actor=None, autoscaler=autoscaler, max_replicas=5, target=70, metric="memory"
    )
    assert pods_charged(tenant) == 5

    def updated():
        found = hpa_of(kube, tenant, "web-hpa")
        return found if found and found.spec.max_replicas == 5 else None

    hpa = wait_for(updated, 30, 0.2)
    metric = hpa.spec.metrics[0].resource
    assert metric.name == "memory" and metric.target.average_utilization == 70

    autoscaler_services.autoscaler_delete(actor=None, autoscaler=Autoscaler.objects.get())
    wait_for(lambda: hpa_of(kube, tenant, "web-hpa") is None, 30, 0.2)
    assert pods_charged(tenant) == 2
    # Sized by Isotope again: a scale by hand works and reaches the cluster.
    services.workload_scale(actor=None, workload=Workload.objects.get(pk=workload.pk), replicas=3)
    wait_for(lambda: running(tenant, "web", 3), RUNNING, 0.2)
    assert deployment_replicas(kube, tenant, "web") == 3


def test_an_hpa_deleted_outside_comes_back_and_deleting_the_deployment_deletes_it(
    make_tenant, kube, celery_worker, watcher
):
    tenant = make_tenant()
    workload = deploy(tenant, replicas=1)
    wait_for(lambda: running(tenant, "web", 1), RUNNING, 0.2)
    autoscaler_services.autoscaler_create(
        actor=None, tenant=tenant, workload=workload, max_replicas=3, target=60
    )
    wait_for(lambda: hpa_of(kube, tenant, "web"), 30, 0.2)
    client.AutoscalingV2Api(kube.api).delete_namespaced_horizontal_pod_autoscaler(
        "web", tenant.namespace
    )
    wait_for(
        lambda: Event.objects.filter(
            tenant=tenant, kind="autoscaler", name="web", reason="DeletedOutsidePortal"
        ).exists(),
        30,
        0.2,
    )
    wait_for(lambda: hpa_of(kube, tenant, "web"), 30, 0.2)

    services.workload_delete(actor=None, workload=Workload.objects.get(pk=workload.pk))
    wait_for(lambda: not Workload.objects.filter(pk=workload.pk).exists(), RUNNING, 0.2)
    assert hpa_of(kube, tenant, "web") is None
    assert not Autoscaler.objects.filter(tenant=tenant).exists()
    assert pods_charged(tenant) == 0


def use_cpu(kube, tenant, name: str, usage: str) -> None:
    """KWOK's simulated CPU usage of each pod of the Deployment's template."""
    kube.apps.patch_namespaced_deployment(
        name,
        tenant.namespace,
        {"spec": {"template": {"metadata": {"annotations": {CPU_USAGE: usage}}}}},
        field_manager="isotope-test",
    )


def metrics_api_available(kube) -> tuple[bool, str]:
    """Whether the cluster serves the resource metrics API (metrics-server's APIService
    is Available), and what it says when not."""
    try:
        service = client.ApiregistrationV1Api(kube.api).read_api_service(METRICS_API)
    except ApiException as error:
        if error.status == 404:
            return False, f"no APIService {METRICS_API} in the cluster"
        raise
    for condition in (service.status and service.status.conditions) or []:
        if condition.type == "Available":
            return condition.status == "True", f"{condition.reason}: {condition.message}"
    return False, f"APIService {METRICS_API} reports no Available condition"


def test_the_hpa_scales_a_busy_deployment_up_and_the_decision_shows_in_the_portal(
    make_tenant, kube, celery_worker, watcher
):
    available, detail = metrics_api_available(kube)
    require(available, f"metrics API not available ({METRICS_API}: {detail})")
    tenant = make_tenant()
    workload = deploy(tenant, name="busy", replicas=1)
    wait_for(lambda: running(tenant, "busy", 1), RUNNING, 0.2)
    # KWOK's simulated usage: each pod of the template uses 200m of its 100m request.
    use_cpu(kube, tenant, "busy", "200m")
    autoscaler_services.autoscaler_create(
        actor=None, tenant=tenant, workload=workload, min_replicas=1, max_replicas=4, target=50
    )

    def rescaled():
        return Event.objects.filter(
            tenant=tenant, kind="autoscaler", name="busy", reason="SuccessfulRescale"
        ).first()

    event = wait_for(rescaled, 180, 1)
    assert event.message.startswith("New size: ") and event.source == "kubernetes"
    row = Autoscaler.objects.get(workload=workload)
    assert row.decisions and row.decisions[0]["to"] > 1
    assert row.decisions[0]["reason"] == "SuccessfulRescale"
    # The Deployment grows to what the HPA decided, and the workload shows it.
    wait_for(lambda: Workload.objects.get(pk=workload.pk).replicas > 1, 60, 0.5)
    wait_for(lambda: deployment_replicas(kube, tenant, "busy") <= 4, 5, 0.5)
    # The HPA's event is on the Deployment's timeline too.
    assert Event.objects.filter(
        tenant=tenant, kind="workload", name="busy", source="kubernetes", reason="SuccessfulRescale"
    ).exists()


def test_an_idle_deployment_scales_to_zero_and_comes_back_when_scaled_by_hand(
    make_tenant, kube, celery_worker, watcher
):
    """Minimum 0: the HPA keeps 1, Isotope's controller (the beat sweep) takes the idle
    Deployment from 1 to 0 after the scale-down window, the HPA then stops acting, and a
    scale by hand brings it back, as a VM pool at zero."""
    from compute.tasks import pools as pool_tasks

    available, detail = metrics_api_available(kube)
    require(available, f"metrics API not available ({METRICS_API}: {detail})")
    tenant = make_tenant(quota={"cpu": 4, "memory": 4096, "pods": 10})
    workload = deploy(tenant, name="idle", replicas=1, cpu_request="500m")
    wait_for(lambda: running(tenant, "idle", 1), RUNNING, 0.2)
    # KWOK's simulated usage: 2m of 500m, 0.4 %, which counts as 0 (an idle timer tick;
    # metrics-server drops a pod whose CPU counter stays at 0, so not nothing at all).
    use_cpu(kube, tenant, "idle", "2m")
    autoscaler = autoscaler_services.autoscaler_create(
        actor=None,
        tenant=tenant,
        workload=workload,
        min_replicas=0,
        max_replicas=3,
        target=50,
        scale_down_window_seconds=5,
    )
    assert pods_charged(tenant) == 3
    hpa = wait_for(lambda: hpa_of(kube, tenant, "idle"), 30, 0.2)
    assert hpa.spec.min_replicas == 1  # a stock HPA cannot go lower

    def at_zero():
        pool_tasks.autoscalers_sweep()  # what beat runs every ISOTOPE_AUTOSCALER_SECONDS
        return Workload.objects.get(pk=workload.pk).replicas == 0

    wait_for(at_zero, 180, 2)
    event = Event.objects.get(tenant=tenant, kind="autoscaler", name="idle", reason="ScaledToZero")
    assert event.message == (
        "New size: 0; reason: CPU utilisation 0% (target 50%) below target: 1 → 0."
    )
    row = Autoscaler.objects.get(pk=autoscaler.pk)
    assert (row.decisions[0]["from"], row.decisions[0]["to"]) == (1, 0)
    assert row.decisions[0]["reason"] == "ScaledToZero"
    # The workload's own timeline says who scaled it; the cluster follows.
    assert Event.objects.filter(
        tenant=tenant, kind="workload", name="idle", message__contains="autoscaler/idle"
    ).exists()
    wait_for(lambda: deployment_replicas(kube, tenant, "idle") == 0, 30, 0.2)
    wait_for(lambda: running(tenant, "idle", 0), RUNNING, 0.2)
    assert pods_charged(tenant) == 3  # the quota keeps holding the maximum

    # At 0 the HPA stops acting; the portal says how the Deployment comes back.
    def disabled():
        row = Autoscaler.objects.get(pk=autoscaler.pk)
        off = any(c.get("reason") == "ScalingDisabled" for c in row.conditions)
        return row if off else None

    row = wait_for(disabled, 60, 0.5)
    assert row.reason == "ScaledToZero" and "by hand" in row.message
    # Nothing wakes it but a person: the sweep leaves it at 0.
    pool_pks = pool_tasks.autoscalers_sweep()
    assert pool_pks >= 1 and Workload.objects.get(pk=workload.pk).replicas == 0

    # The path back: a scale by hand, up to the autoscaler's maximum.
    services.workload_scale(actor=None, workload=Workload.objects.get(pk=workload.pk), replicas=2)
    wait_for(lambda: running(tenant, "idle", 2), RUNNING, 0.2)
    assert deployment_replicas(kube, tenant, "idle") == 2
    assert pods_charged(tenant) == 3
    # The HPA acts again (its replicas are its own once more), and a scale by hand is
    # refused again.
    wait_for(
        lambda: (
            not any(
                c.get("reason") == "ScalingDisabled"
                for c in Autoscaler.objects.get(pk=autoscaler.pk).conditions
            )
        ),
        60,
        0.5,
    )
    with pytest.raises(Conflict):
        services.workload_scale(
            actor=None, workload=Workload.objects.get(pk=workload.pk), replicas=3
        )
