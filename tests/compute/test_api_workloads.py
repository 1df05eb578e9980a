"""The workload REST API: shape, roles, bad input, Idempotency-Key, If-Match, quota
(shared with VMs), isolation.

No Celery worker and no API server here: creates are accepted (202) and stay
``Pending``; the ``kubernetes`` tier covers what happens on the cluster.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from compute.choices import Phase
from compute.models import KubernetesCluster, Workload
from compute.services import workloads as services
from monitoring import crypto
from tenants import services as tenant_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog, Quota

pytestmark = pytest.mark.unit

PROBLEM = "application/problem+json"
BASE = "/api/v1/tenants/acme/workloads/"


@pytest.fixture
def cluster(db):
    return KubernetesCluster.objects.create(
        name="fake",
        server="https://127.0.0.1:1",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
        default=True,
        capabilities={"logs": False},
    )


@pytest.fixture
def world(demo, cluster):
    return demo


def body(name: str = "web", **spec) -> dict:
    spec = {"image": "nginx:1.27", "replicas": 2, **spec}
    spec.setdefault("resources", {"requests": {"cpu": "250m", "memory": "128Mi"}})
    return {"metadata": {"name": name}, "spec": spec}


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    return json.loads(response.content)


def used(tenant) -> tuple:
    q = Quota.objects.get(tenant=tenant)
    return (q.used_cpu, q.used_memory, q.used_pods)


def make(world, name="web", phase=None, **kwargs) -> Workload:
    workload = services.workload_create(
        actor=None, tenant=world.acme, name=name, image="nginx:1.27", **kwargs
    )
    if phase:
        Workload.objects.filter(pk=workload.pk).update(phase=phase)
        workload.refresh_from_db()
    return workload


def test_create_is_accepted_in_the_metadata_spec_status_shape_and_charges_the_quota(world, api):
    response = api(world.bob).post(
        BASE,
        body(
            env={"MODE": "prod"},
            ports=[8080],
            service={"type": "ClusterIP"},
            resources={
                "requests": {"cpu": "250m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "256Mi"},
            },
        ),
        format="json",
    )
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["metadata"]["name"] == "web" and data["metadata"]["tenant"] == "acme"
    assert data["spec"]["resources"] == {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    assert data["spec"]["kind"] == "Deployment" and data["spec"]["replicas"] == 2
    assert data["spec"]["service"] == {"type": "ClusterIP"}
    assert data["status"]["phase"] == "Pending" and data["status"]["readyReplicas"] == 0
    assert data["status"]["actions"] == ["scale", "restart", "delete"]
    assert "cluster" not in data["status"]
    assert response["Location"] == "http://testserver/api/v1/tenants/acme/workloads/web/"
    assert used(world.acme) == (Decimal("0.500"), 256, 2)
    workload = Workload.objects.get(name="web")
    assert workload.created_by == world.bob and workload.cpu_limit_m == 1000
    assert api(world.carol).get(f"{BASE}web/").json()["status"]["actions"] == []
    # Ready, like a VM's: from pod readiness (every desired pod ready is the Running phase).
    (condition,) = data["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Ready",
        "False",
        "PodsNotReady",
    )
    assert condition["message"] == "0/2 pods ready; Pending."
    Workload.objects.filter(pk=workload.pk).update(
        phase="Running", ready_replicas=2, available_replicas=2
    )
    (condition,) = api(world.carol).get(f"{BASE}web/").json()["status"]["conditions"]
    assert condition["status"] == "True" and condition["message"] == "2/2 pods ready"
    assert condition["lastTransitionTime"].endswith("Z")


def test_a_retried_create_with_the_same_idempotency_key_returns_the_first_result(world, api):
    client = api(world.bob)
    first = client.post(BASE, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(BASE, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["metadata"]["uid"] == first.json()["metadata"]["uid"]
    assert Workload.objects.count() == 1 and used(world.acme)[2] == 2


@pytest.mark.parametrize(
    "payload, field",
    [
        (body(image="Nginx"), "spec.image"),
        (body(image="nginx::1"), "spec.image"),
        (body(image=""), "spec.image"),
        (
            body(resources={"requests": {"cpu": "lots", "memory": "128Mi"}}),
            "spec.resources.requests.cpu",
        ),
        (
            body(resources={"requests": {"cpu": "0.0001", "memory": "128Mi"}}),
            "spec.resources.requests.cpu",
        ),
        (
            body(resources={"requests": {"cpu": "1", "memory": "12m"}}),
            "spec.resources.requests.memory",
        ),
        (
            body(resources={"requests": {"cpu": "1", "memory": "256MB"}}),
            "spec.resources.requests.memory",
        ),
        (
            body(resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "500m"}}),
            "spec.resources.limits.cpu",
        ),
        (body("x" * 47), "metadata.name"),
        (body("a" * 64, kind="Pod", replicas=1), "metadata.name"),
        (body("1abc"), "metadata.name"),
        (body("Web"), "metadata.name"),
        (body("new"), "metadata.name"),
        (body(replicas=101), "spec.replicas"),
        (body(kind="Pod", replicas=3), "spec.replicas"),
        (body(ports=[0]), "spec.ports"),
        (body(ports=[70000]), "spec.ports"),
        (body(service={"type": "NodePort"}), "spec.ports"),
        (body(env={"BAD NAME": "x"}), "spec.env"),
        (body(kind="StatefulSet"), "spec.kind"),
        (body(surprise=True), "spec.surprise"),
    ],
)
def test_bad_input_gets_field_errors_and_changes_nothing(world, api, payload, field):
    data = problem(api(world.bob).post(BASE, payload, format="json"), 400)
    assert field in data["errors"], data
    assert Workload.objects.count() == 0 and used(world.acme) == (Decimal(0), 0, 0)


def test_the_longest_deployment_name_is_46_and_a_pod_may_use_63(world, api):
    assert api(world.bob).post(BASE, body("d" * 46), format="json").status_code == 202
    pod = body("p" * 63, kind="Pod", replicas=1)
    assert api(world.bob).post(BASE, pod, format="json").status_code == 202


def test_vms_and_pods_share_the_cpu_quota_and_the_next_workload_gets_a_field_error(
    world, api, make_host, tiny_image
):
    from compute.services import vms as vm_services

    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"cpu": 4})
    make_host("host-a", cpus=16, memory_mib=32768)
    vm_services.vm_create(
        actor=None, tenant=world.acme, name="db", image="tiny", vcpus=2, memory_mib=256
    )
    ok = body("pods", replicas=2, resources={"requests": {"cpu": "1", "memory": "64Mi"}})
    assert api(world.bob).post(BASE, ok, format="json").status_code == 202

    more = body("more", replicas=1, resources={"requests": {"cpu": "100m", "memory": "64Mi"}})
    data = problem(api(world.bob).post(BASE, more, format="json"), 403)
    assert data["title"] == "Quota exceeded"
    assert "spec.resources.requests.cpu" in data["errors"] and "cpu" in data["errors"]
    assert "0 cores left of 4" in data["detail"]
    assert not Workload.objects.filter(name="more").exists()


def test_scale_rechecks_the_quota_and_keeps_the_old_charge_when_refused(world, api):
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"pods": 4})
    make(world, replicas=2, phase=Phase.RUNNING)
    client = api(world.bob)
    refused = problem(client.post(f"{BASE}web/scale/", {"replicas": 5}, format="json"), 403)
    assert "spec.replicas" in refused["errors"]
    assert used(world.acme)[2] == 2 and Workload.objects.get().replicas == 2

    response = client.post(f"{BASE}web/scale/", {"replicas": 4}, format="json")
    assert response.status_code == 202 and response.json()["spec"]["replicas"] == 4
    assert used(world.acme)[2] == 4
    assert client.post(f"{BASE}web/scale/", {"replicas": 0}, format="json").status_code == 202
    assert used(world.acme) == (Decimal(0), 0, 0)


def test_restart_and_delete_are_accepted_and_delete_is_deleting(world, api):
    make(world, replicas=1, phase=Phase.RUNNING)
    client = api(world.bob)
    restarted = client.post(f"{BASE}web/restart/")
    assert restarted.status_code == 202 and Workload.objects.get().restarted_at
    deleted = client.delete(f"{BASE}web/")
    assert deleted.status_code == 202 and deleted.json()["status"]["phase"] == "Deleting"
    assert problem(client.post(f"{BASE}web/restart/"), 409)
    assert used(world.acme)[2] == 1  # released when its pods are gone, not before


def test_a_single_pod_cannot_scale_or_restart(world, api):
    make(world, "solo", kind="Pod", phase=Phase.RUNNING)
    client = api(world.bob)
    assert problem(client.post(f"{BASE}solo/scale/", {"replicas": 2}, format="json"), 409)
    assert problem(client.post(f"{BASE}solo/restart/"), 409)


def test_if_match_with_a_stale_resource_version_is_412(world, api):
    workload = make(world, replicas=1, phase=Phase.RUNNING)
    client = api(world.bob)
    stale = f'"{workload.resource_version - 1}"'
    problem(
        client.post(f"{BASE}web/scale/", {"replicas": 2}, format="json", HTTP_IF_MATCH=stale), 412
    )
    current = f'"{workload.resource_version}"'
    ok = client.post(f"{BASE}web/scale/", {"replicas": 2}, format="json", HTTP_IF_MATCH=current)
    assert ok.status_code == 202


@pytest.mark.parametrize(
    "user, list_code, create_code, act_code",
    [
        ("alice", 200, 202, 202),
        ("bob", 200, 202, 202),
        ("carol", 200, 403, 403),
        ("dave", 404, 404, 404),
        ("outsider", 404, 404, 404),
    ],
)
def test_role_matrix(world, api, user, list_code, create_code, act_code):
    make(world, "existing", replicas=1, phase=Phase.RUNNING)
    client = api(getattr(world, user))
    assert client.get(BASE).status_code == list_code
    assert client.get(f"{BASE}existing/").status_code == list_code
    assert client.post(BASE, body("new-one"), format="json").status_code == create_code
    scale = client.post(f"{BASE}existing/scale/", {"replicas": 1}, format="json")
    assert scale.status_code == act_code
    assert client.post(f"{BASE}existing/restart/").status_code == act_code
    relabel = {"metadata": {"labels": {"app": "web"}}}
    assert client.patch(f"{BASE}existing/", relabel, format="json").status_code == act_code
    labelled = Workload.objects.get(name="existing").labels == {"app": "web"}
    assert labelled == (act_code == 202)
    assert client.delete(f"{BASE}existing/").status_code == act_code
    if act_code == 403:
        assert AuditLog.objects.filter(
            actor=world.carol, outcome=AuditOutcome.DENIED, action="workload.operate"
        ).exists()


def test_patch_labels_is_a_new_generation_audited_with_if_match(world, api):
    workload = make(world, replicas=1, phase=Phase.RUNNING, labels={"app": "web"})
    client = api(world.bob)
    etag = client.get(f"{BASE}web/")["ETag"]
    response = client.patch(
        f"{BASE}web/",
        {"metadata": {"labels": {"app": "api", "tier": "front"}}},
        format="json",
        HTTP_IF_MATCH=etag,
    )
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["metadata"]["labels"] == {"app": "api", "tier": "front"}
    assert data["status"]["phase"] == "Pending"  # a Deployment's pods roll to carry them
    row = Workload.objects.get(pk=workload.pk)
    assert row.labels == {"app": "api", "tier": "front"}
    assert row.generation == workload.generation + 1
    assert AuditLog.objects.get(action="workload.relabel").detail == {
        "from": {"app": "web"},
        "to": {"app": "api", "tier": "front"},
    }
    stale = client.patch(
        f"{BASE}web/", {"metadata": {"labels": {}}}, format="json", HTTP_IF_MATCH=etag
    )
    problem(stale, 412)
    assert Workload.objects.get(pk=workload.pk).labels == {"app": "api", "tier": "front"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"metadata": {"labels": {"bad key": "x"}}}, "metadata.labels"),
        ({"metadata": {"labels": {"app": "web-"}}}, "metadata.labels"),
        ({"metadata": {}}, "metadata.labels"),
        ({"metadata": {"labels": {}, "name": "x"}}, "metadata.name"),
        ({"spec": {"replicas": 3}}, "spec.replicas"),
    ],
)
def test_a_bad_labels_patch_is_a_field_error_and_changes_nothing(world, api, data, field):
    workload = make(world, replicas=1, phase=Phase.RUNNING, labels={"app": "web"})
    response = api(world.bob).patch(f"{BASE}web/", data, format="json")
    assert field in problem(response, 400)["errors"]
    row = Workload.objects.get(pk=workload.pk)
    assert (row.labels, row.resource_version) == ({"app": "web"}, workload.resource_version)


def test_another_tenants_workload_cannot_be_relabelled(world, api):
    other = services.workload_create(
        actor=None, tenant=world.globex, name="secret", image="nginx:1.27"
    )
    response = api(world.bob).patch(
        "/api/v1/tenants/globex/workloads/secret/",
        {"metadata": {"labels": {"app": "web"}}},
        format="json",
    )
    problem(response, 404)
    assert Workload.objects.get(pk=other.pk).labels == {}


def test_anonymous_requests_are_refused(world, api):
    assert api().get(BASE).status_code in (401, 403)
    assert api().post(BASE, body(), format="json").status_code in (401, 403)


def test_staff_see_the_cluster(world, api):
    make(world)
    assert api(world.admin).get(f"{BASE}web/").json()["status"]["cluster"] == "fake"
