"""Workloads on the real API server with KWOK nodes, status from the watch: a
Deployment's pods run, scale up and down, delete releases quota once; VMs and pods
share one quota; the API server's own quota refusal is surfaced and released; new labels
roll a Deployment's pods (the selector unchanged) and change a bare pod's own labels in
place."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compute.choices import Phase
from compute.models import Workload
from compute.services import vms as vm_services
from compute.services import workloads as services
from monitoring.models import Event
from portal.exceptions import QuotaExceeded
from tenants.models import Quota, Reservation
from tests.conftest import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]

RUNNING = 60


def phase_of(name: str, tenant) -> tuple:
    w = Workload.objects.filter(tenant=tenant, name=name).first()
    return (w.phase, w.ready_replicas, len(w.pods)) if w else None


def pod_phases(name: str, tenant) -> list[str]:
    """The phases of the pods the portal lists for workload ``name``."""
    return [pod["phase"] for pod in Workload.objects.get(tenant=tenant, name=name).pods]


def running_pods(kube, tenant, name: str) -> list:
    pods = kube.core.list_namespaced_pod(
        tenant.namespace, label_selector=f"isotope.dev/workload={name}"
    ).items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def used(tenant) -> tuple:
    q = Quota.objects.get(tenant=tenant)
    return (q.used_cpu, q.used_memory, q.used_pods)


def test_deployment_runs_scales_to_five_and_zero_and_delete_releases_quota_once(
    make_tenant, kube, celery_worker, watcher
):
    tenant = make_tenant()
    workload = services.workload_create(
        actor=None,
        tenant=tenant,
        name="web",
        image="registry.invalid/isotope/web:1",
        replicas=3,
        cpu_request="250m",
        memory_request="64Mi",
        ports=[8080],
        service_type="ClusterIP",
    )
    assert used(tenant) == (Decimal("0.750"), 192, 3)

    wait_for(lambda: phase_of("web", tenant) == (Phase.RUNNING, 3, 3), RUNNING, 0.2)
    assert len(running_pods(kube, tenant, "web")) == 3
    # The pods' list follows the pods' own watch, the phase the Deployment's: a pod's
    # Running may arrive just after the Deployment counted it ready.
    wait_for(lambda: pod_phases("web", tenant) == ["Running"] * 3, 20, 0.2)
    workload.refresh_from_db()
    assert all(p["node"].startswith("isotope-node-") for p in workload.pods)
    assert kube.core.read_namespaced_service("web", tenant.namespace).spec.ports[0].port == 8080
    # Kubernetes' own events joined the portal's timeline.
    wait_for(
        lambda: Event.objects.filter(tenant=tenant, name="web", source="kubernetes").exists(),
        20,
    )

    services.workload_scale(actor=None, workload=workload, replicas=5)
    assert used(tenant) == (Decimal("1.250"), 320, 5)
    wait_for(lambda: phase_of("web", tenant) == (Phase.RUNNING, 5, 5), RUNNING, 0.2)

    services.workload_scale(actor=None, workload=workload, replicas=0)
    assert used(tenant) == (Decimal("0"), 0, 0)
    wait_for(lambda: phase_of("web", tenant) == (Phase.RUNNING, 0, 0), RUNNING, 0.2)
    assert running_pods(kube, tenant, "web") == []

    services.workload_scale(actor=None, workload=workload, replicas=2)
    wait_for(lambda: phase_of("web", tenant) == (Phase.RUNNING, 2, 2), RUNNING, 0.2)
    workload.refresh_from_db()
    services.workload_delete(actor=None, workload=workload)
    wait_for(lambda: not Workload.objects.filter(pk=workload.pk).exists(), RUNNING, 0.2)

    assert used(tenant) == (Decimal("0"), 0, 0)
    reservations = Reservation.objects.filter(ref=workload.quota_ref)
    assert reservations.filter(released__isnull=True).count() == 0
    deployments = kube.apps.list_namespaced_deployment(tenant.namespace).items
    assert deployments == [] and running_pods(kube, tenant, "web") == []
    assert kube.core.list_namespaced_service(tenant.namespace).items == []
    deleted = Event.objects.get(tenant=tenant, name="web", reason="Deleted")
    assert deleted.message == "Deleted; its quota was released." and deleted.count == 1


def test_vms_and_pods_share_one_cpu_quota(
    make_tenant, make_host, tiny_image, celery_worker, watcher, kube
):
    tenant = make_tenant(quota={"cpu": 4, "memory": 8192, "pods": 10})
    make_host("k8s-quota-host", cpus=16, memory_mib=65536)
    vm_services.vm_create(
        actor=None, tenant=tenant, name="db", image="tiny", vcpus=2, memory_mib=512, start=False
    )

    services.workload_create(
        actor=None, tenant=tenant, name="api", image="nginx:1.27", replicas=2, cpu_request="750m"
    )
    services.workload_create(
        actor=None, tenant=tenant, name="worker", image="nginx:1.27", cpu_request="500m"
    )
    assert used(tenant)[0] == Decimal("4.000")
    with pytest.raises(QuotaExceeded) as refused:
        services.workload_create(
            actor=None, tenant=tenant, name="one-more", image="nginx:1.27", cpu_request="1m"
        )
    assert refused.value.resource == "cpu" and refused.value.left == 0
    assert not Workload.objects.filter(name="one-more").exists()

    wait_for(lambda: phase_of("api", tenant) == (Phase.RUNNING, 2, 2), RUNNING, 0.2)
    wait_for(lambda: phase_of("worker", tenant) == (Phase.RUNNING, 1, 1), RUNNING, 0.2)
    assert len(running_pods(kube, tenant, "api")) == 2


def test_the_api_servers_quota_refusal_is_shown_and_releases_the_reservation(
    make_tenant, cluster, kube, celery_worker
):
    from compute.services.clusters import tenant_provision

    tenant = make_tenant(quota={"pods": 2})
    tenant_provision(tenant=tenant, cluster=cluster)
    # Someone uses the namespace's quota outside the portal (the ledger does not see it).
    for index in range(2):
        kube.core.create_namespaced_pod(
            tenant.namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"outside-{index}"},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]},
            },
        )
    workload = services.workload_create(
        actor=None, tenant=tenant, name="single", kind="Pod", image="nginx:1.27"
    )
    assert used(tenant)[2] == 1

    wait_for(lambda: phase_of("single", tenant)[0] == Phase.FAILED, 30, 0.2)
    workload.refresh_from_db()
    assert "exceeded quota" in workload.message
    assert "quota reservation was released" in workload.message
    assert used(tenant) == (Decimal("0"), 0, 0)
    event = Event.objects.get(tenant=tenant, name="single", reason="QuotaRefused")
    assert event.type == "Warning"

    services.workload_delete(actor=None, workload=workload)
    wait_for(lambda: not Workload.objects.filter(pk=workload.pk).exists(), 30, 0.2)
    assert used(tenant) == (Decimal("0"), 0, 0)  # released once, not twice
    assert Event.objects.get(tenant=tenant, name="single", reason="Deleted").message == "Deleted."


def test_restart_rolls_every_pod_and_comes_back_running(make_tenant, kube, celery_worker, watcher):
    tenant = make_tenant()
    workload = services.workload_create(
        actor=None, tenant=tenant, name="roll", image="nginx:1.27", replicas=2
    )
    wait_for(lambda: phase_of("roll", tenant) == (Phase.RUNNING, 2, 2), RUNNING, 0.2)
    before = {p.metadata.name for p in running_pods(kube, tenant, "roll")}

    workload.refresh_from_db()
    services.workload_restart(actor=None, workload=workload)

    def rolled():
        now = {p.metadata.name for p in running_pods(kube, tenant, "roll")}
        return len(now) == 2 and not (now & before) and phase_of("roll", tenant)[0] == "Running"

    wait_for(rolled, RUNNING, 0.2)
    template = kube.apps.read_namespaced_deployment("roll", tenant.namespace).spec.template
    assert "kubectl.kubernetes.io/restartedAt" in template.metadata.annotations


def test_a_deployment_deleted_outside_the_portal_is_recreated(
    make_tenant, kube, celery_worker, watcher
):
    tenant = make_tenant()
    services.workload_create(actor=None, tenant=tenant, name="keep", image="nginx:1.27")
    wait_for(lambda: phase_of("keep", tenant) == (Phase.RUNNING, 1, 1), RUNNING, 0.2)

    kube.apps.delete_namespaced_deployment("keep", tenant.namespace)

    wait_for(
        lambda: Event.objects.filter(tenant=tenant, reason="DeletedOutsidePortal").exists(), 30
    )
    wait_for(lambda: phase_of("keep", tenant) == (Phase.RUNNING, 1, 1), RUNNING, 0.2)
    assert kube.apps.read_namespaced_deployment("keep", tenant.namespace)


def test_relabelling_rolls_a_deployments_pods_and_patches_a_bare_pods_labels(
    make_tenant, kube, celery_worker, watcher
):
    tenant = make_tenant()
    deployment = services.workload_create(
        actor=None,
        tenant=tenant,
        name="tagged",
        image="nginx:1.27",
        replicas=2,
        labels={"app": "web", "tier": "front"},
    )
    single = services.workload_create(
        actor=None, tenant=tenant, name="single", image="nginx:1.27", kind="Pod", labels={}
    )
    wait_for(lambda: phase_of("tagged", tenant) == (Phase.RUNNING, 2, 2), RUNNING, 0.2)
    wait_for(lambda: phase_of("single", tenant) == (Phase.RUNNING, 1, 1), RUNNING, 0.2)
    before = {p.metadata.name for p in running_pods(kube, tenant, "tagged")}
    assert all(p.metadata.labels["app"] == "web" for p in running_pods(kube, tenant, "tagged"))

    deployment.refresh_from_db()
    services.workload_relabel(actor=None, workload=deployment, labels={"app": "api"})

    def rolled():
        pods = running_pods(kube, tenant, "tagged")
        names = {p.metadata.name for p in pods}
        return (
            len(pods) == 2
            and not (names & before)
            and all(p.metadata.labels.get("app") == "api" for p in pods)
            and all("tier" not in p.metadata.labels for p in pods)
            and phase_of("tagged", tenant)[0] == Phase.RUNNING
        )

    wait_for(rolled, RUNNING, 0.2, message="the Deployment's pods did not roll to the new labels")
    found = kube.apps.read_namespaced_deployment("tagged", tenant.namespace)
    assert found.spec.template.metadata.labels["app"] == "api"
    assert "tier" not in found.spec.template.metadata.labels
    assert found.spec.selector.match_labels == {"isotope.dev/workload": "tagged"}

    # A bare pod keeps running: its own labels change in place.
    (pod,) = running_pods(kube, tenant, "single")
    # A label someone else puts on the pod is not Isotope's to remove.
    kube.core.patch_namespaced_pod(
        pod.metadata.name, tenant.namespace, {"metadata": {"labels": {"owner": "ops"}}}
    )
    single.refresh_from_db()
    services.workload_relabel(actor=None, workload=single, labels={"app": "db"})

    def patched():
        found = kube.core.read_namespaced_pod(pod.metadata.name, tenant.namespace)
        return found if (found.metadata.labels or {}).get("app") == "db" else None

    found = wait_for(patched, RUNNING, 0.2, message="the pod's labels were not patched")
    assert found.metadata.uid == pod.metadata.uid  # the same pod, not a new one
    assert found.metadata.labels["isotope.dev/workload"] == "single"
    services.workload_relabel(actor=None, workload=Workload.objects.get(pk=single.pk), labels={})
    wait_for(
        lambda: (
            "app"
            not in kube.core.read_namespaced_pod(
                pod.metadata.name, tenant.namespace
            ).metadata.labels
        ),
        RUNNING,
        0.2,
        message="a removed label stayed on the pod",
    )
    labels = kube.core.read_namespaced_pod(pod.metadata.name, tenant.namespace).metadata.labels
    assert labels["owner"] == "ops"
