"""The VM pool and autoscaler API: shape, the role matrix, other tenants, bad input,
Idempotency-Key, If-Match, the scale action, events and audit.

No Celery worker here: a pool is accepted (202) and its controller runs when the test
calls it (``pool_reconcile``), as the worker would after commit."""

from __future__ import annotations

import pytest

from compute.choices import Phase
from compute.models import Autoscaler, VirtualMachine, VMPool
from compute.services import autoscalers as autoscaler_services
from compute.services import pools as pool_services
from monitoring.models import Event
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_volumes import problem

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

POOLS = "/api/v1/tenants/acme/vmpools/"
SCALERS = "/api/v1/tenants/acme/autoscalers/"
BODY = {
    "metadata": {"name": "web", "labels": {"tier": "web"}},
    "spec": {"replicas": 2, "template": {"image": "tiny", "vcpus": 1, "memoryMiB": 256}},
}
SCALER = {
    "metadata": {"name": "web"},
    "spec": {
        "scaleTargetRef": {"kind": "VMPool", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 5,
        "targetUtilization": 60,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}},
    },
}


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    return demo


def make_pool(demo, name="web", replicas=2, tenant=None) -> VMPool:
    pool = pool_services.pool_create(
        actor=None,
        tenant=tenant or demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        replicas=replicas,
    )
    return pool_services.pool_reconcile(pool.pk)


def test_a_pool_is_accepted_in_the_resource_shape_and_lists_its_members(world, api):
    response = api(world.bob).post(POOLS, BODY, format="json")
    assert response.status_code == 202, response.content
    assert response["Location"].endswith("/api/v1/tenants/acme/vmpools/web/")
    data = response.json()
    assert response["ETag"] == f'"{data["metadata"]["resourceVersion"]}"'
    assert data["metadata"]["labels"] == {"tier": "web"}
    assert data["spec"] == {
        "replicas": 2,
        "warm": 0,
        "warmMode": "stopped",
        "paused": False,
        "strategy": {"type": "rolling", "maxSurge": 1, "maxUnavailable": 0},
        "template": {
            "image": "tiny",
            "vcpus": 1,
            "memoryMiB": 256,
            "diskGiB": 0,
            "restartPolicy": "OnFailure",
        },
    }
    assert data["status"]["phase"] == "Pending" and data["status"]["members"] == []
    pool_services.pool_reconcile(VMPool.objects.get(name="web").pk)
    got = api(world.carol).get(f"{POOLS}web/").json()
    assert [m["name"] for m in got["status"]["members"]] == ["web-0", "web-1"]
    assert got["status"]["currentReplicas"] == 2 and got["status"]["autoscaler"] is None
    listed = api(world.carol).get(POOLS).json()["items"]
    assert [p["metadata"]["name"] for p in listed] == ["web"]
    assert api(world.carol).get(f"{POOLS}?phase=Scaling").json()["items"]
    problem(api(world.carol).get(f"{POOLS}?phase=Running"), 400, "invalid")
    assert AuditLog.objects.filter(actor=world.bob, action="vmpool.create").exists()


def test_scale_is_an_action_with_if_match_and_an_event(world, api):
    pool = make_pool(world)
    client = api(world.bob)
    problem(
        client.post(f"{POOLS}web/scale/", {"replicas": 3}, format="json", HTTP_IF_MATCH='"1"'),
        412,
    )
    version = client.get(f"{POOLS}web/")["ETag"]
    response = client.post(
        f"{POOLS}web/scale/", {"replicas": 3}, format="json", HTTP_IF_MATCH=version
    )
    assert response.status_code == 202, response.content
    assert response.json()["spec"]["replicas"] == 3
    pool_services.pool_reconcile(pool.pk)
    assert VirtualMachine.objects.filter(pool=pool).count() == 3
    assert Event.objects.filter(kind="vmpool", name="web", reason="Scaled").exists()
    errors = problem(client.post(f"{POOLS}web/scale/", {"replicas": 101}, format="json"), 400)
    assert "spec.replicas" in errors["errors"]
    errors = problem(client.post(f"{POOLS}web/scale/", {"replica": 2}, format="json"), 400)
    assert set(errors["errors"]) == {"replica", "replicas"}


def test_a_template_patch_rolls_out_with_if_match_and_shows_progress(world, api):
    pool = make_pool(world)
    client = api(world.bob)
    change = {"spec": {"template": {"memoryMiB": 384}, "strategy": {"maxUnavailable": 1}}}
    problem(client.patch(f"{POOLS}web/", change, format="json", HTTP_IF_MATCH='"1"'), 412)
    version = client.get(f"{POOLS}web/")["ETag"]
    response = client.patch(f"{POOLS}web/", change, format="json", HTTP_IF_MATCH=version)
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["spec"]["template"]["memoryMiB"] == 384
    assert data["spec"]["strategy"] == {"type": "rolling", "maxSurge": 1, "maxUnavailable": 1}
    assert data["status"]["templateGeneration"] == 2
    pool_services.pool_reconcile(pool.pk)
    status = client.get(f"{POOLS}web/").json()["status"]
    assert status["phase"] == "Updating" and status["updatedReplicas"] == 0
    assert status["message"].startswith("Updated 0 of 2.")
    templates = {m["name"]: m["template"] for m in status["members"]}
    assert templates["web-2"] == 2
    paused = client.patch(f"{POOLS}web/", {"spec": {"paused": True}}, format="json")
    assert paused.json()["spec"]["paused"] is True
    assert AuditLog.objects.filter(actor=world.bob, action="vmpool.update").count() == 2


def test_the_recreate_strategy_and_paused_warm_members_are_set_by_the_api(world, api):
    client = api(world.bob)
    body = {
        **BODY,
        "spec": {**BODY["spec"], "warm": 1, "warmMode": "paused", "strategy": {"type": "recreate"}},
    }
    response = client.post(POOLS, body, format="json")
    assert response.status_code == 202, response.content
    spec = response.json()["spec"]
    assert (spec["strategy"]["type"], spec["warmMode"]) == ("recreate", "paused")
    pool = VMPool.objects.get(name="web")
    assert (pool.strategy, pool.warm_mode) == ("recreate", "paused")
    change = {"spec": {"strategy": {"type": "rolling"}, "warmMode": "stopped"}}
    version = client.get(f"{POOLS}web/")["ETag"]
    response = client.patch(f"{POOLS}web/", change, format="json", HTTP_IF_MATCH=version)
    assert response.status_code == 202, response.content
    assert response.json()["spec"]["strategy"]["type"] == "rolling"
    assert response.json()["spec"]["warmMode"] == "stopped"
    bad = {"spec": {"strategy": {"type": "blue-green"}, "warmMode": "frozen"}}
    errors = problem(client.patch(f"{POOLS}web/", bad, format="json"), 400)["errors"]
    assert {"spec.strategy.type", "spec.warmMode"} <= set(errors)
    assert (VMPool.objects.get(name="web").strategy, VMPool.objects.get(name="web").warm_mode) == (
        "rolling",
        "stopped",
    )


def test_a_bad_patch_names_the_api_fields_and_changes_nothing(world, api):
    make_pool(world)
    client = api(world.bob)
    bad = {"spec": {"template": {"image": "nope", "vcpus": 0}, "warm": 101}}
    errors = problem(client.patch(f"{POOLS}web/", bad, format="json"), 400)["errors"]
    assert {"spec.template.image", "spec.template.vcpus", "spec.warm"} <= set(errors)
    errors = problem(client.patch(f"{POOLS}web/", {"spec": {"replicas": 3}}, format="json"), 400)
    assert "spec.replicas" in errors["errors"] or "replicas" in errors["errors"]
    assert VMPool.objects.get(name="web").template_generation == 1


def test_bad_input_names_the_api_fields_and_creates_nothing(world, api):
    body = {
        "metadata": {"name": "Web_1"},
        "spec": {"replicas": -1, "template": {"image": "nope", "vcpus": 0, "memoryMiB": 256}},
    }
    errors = problem(api(world.bob).post(POOLS, body, format="json"), 400, "invalid")["errors"]
    assert {
        "metadata.name",
        "spec.replicas",
        "spec.template.image",
        "spec.template.vcpus",
    } <= set(errors)
    assert not VMPool.objects.exists()


def test_a_retried_create_with_the_same_idempotency_key_returns_the_first(world, api):
    client = api(world.bob)
    first = client.post(POOLS, BODY, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = client.post(POOLS, BODY, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert VMPool.objects.count() == 1


def test_delete_needs_the_current_version_and_cascades(world, api):
    pool = make_pool(world)
    client = api(world.bob)
    problem(client.delete(f"{POOLS}web/", HTTP_IF_MATCH='"999"'), 412)
    response = client.delete(f"{POOLS}web/")
    assert response.status_code == 202 and response.json()["status"]["phase"] == "Deleting"
    pool_services.pool_reconcile(pool.pk)
    assert set(VirtualMachine.objects.filter(pool=pool).values_list("phase", flat=True)) == {
        Phase.DELETING
    }
    problem(client.post(f"{POOLS}web/scale/", {"replicas": 1}, format="json"), 409)


def test_an_autoscaler_is_created_read_changed_and_deleted(world, api):
    make_pool(world)
    client = api(world.bob)
    response = client.post(SCALERS, SCALER, format="json")
    assert response.status_code == 202, response.content
    assert response["Location"].endswith("/api/v1/tenants/acme/autoscalers/web/")
    spec = response.json()["spec"]
    assert spec["scaleTargetRef"] == {"kind": "VMPool", "name": "web"}
    assert (spec["minReplicas"], spec["maxReplicas"], spec["targetUtilization"]) == (1, 5, 60)
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 120, "percent": 100}
    assert spec["behavior"]["scaleUp"] == {"pods": 4, "percent": 100}
    autoscaler_services.autoscaler_reconcile(Autoscaler.objects.get().pk)
    status = client.get(f"{SCALERS}web/").json()["status"]
    assert status["reason"] == "FailedGetMetrics" and status["currentReplicas"] == 2
    assert client.get(f"{POOLS}web/").json()["status"]["autoscaler"] == "web"
    errors = problem(client.post(SCALERS, SCALER, format="json"), 400)
    assert "metadata.name" in errors["errors"]
    second = {**SCALER, "metadata": {"name": "web2"}}
    errors = problem(client.post(SCALERS, second, format="json"), 409)
    assert "spec.scaleTargetRef.name" in errors["errors"]
    version = client.get(f"{SCALERS}web/")["ETag"]
    response = client.patch(
        f"{SCALERS}web/", {"spec": {"maxReplicas": 8}}, format="json", HTTP_IF_MATCH=version
    )
    assert response.status_code == 202 and response.json()["spec"]["maxReplicas"] == 8
    problem(
        client.patch(
            f"{SCALERS}web/", {"spec": {"maxReplicas": 9}}, format="json", HTTP_IF_MATCH=version
        ),
        412,
    )
    errors = problem(
        client.patch(f"{SCALERS}web/", {"spec": {"minReplicas": 9}}, format="json"), 400
    )
    assert "spec.minReplicas" in errors["errors"]
    errors = problem(
        client.patch(f"{SCALERS}web/", {"spec": {"scaleTargetRef": {"name": "x"}}}, format="json"),
        400,
    )
    assert "spec.scaleTargetRef" in errors["errors"]
    assert client.delete(f"{SCALERS}web/").status_code == 204
    assert not Autoscaler.objects.exists()
    assert AuditLog.objects.filter(actor=world.bob, action="autoscaler.delete").exists()


def test_an_autoscaler_for_a_pool_that_does_not_exist_is_404(world, api):
    make_pool(world, "theirs", tenant=world.globex)
    body = {**SCALER, "spec": {**SCALER["spec"], "scaleTargetRef": {"name": "theirs"}}}
    problem(api(world.bob).post(SCALERS, body, format="json"), 404)


ROLE_STATUS = {
    # who: (pools list, get, create, scale, patch, delete,
    #       scalers list, get, create, patch, delete)
    "alice": (200, 200, 202, 202, 202, 202, 200, 200, 202, 202, 204),
    "bob": (200, 200, 202, 202, 202, 202, 200, 200, 202, 202, 204),
    "carol": (200, 200, 403, 403, 403, 403, 200, 200, 403, 403, 403),
    "dave": (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "outsider": (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ROLE_STATUS))
def test_the_role_matrix_for_every_pool_and_autoscaler_endpoint(world, api, who):
    make_pool(world, "web")
    make_pool(world, "gone")
    make_pool(world, "other")
    make_pool(world, "spare", replicas=0)
    autoscaler_services.autoscaler_create(
        actor=None,
        tenant=world.acme,
        pool=VMPool.objects.get(name="web"),
        max_replicas=4,
        target=50,
    )
    autoscaler_services.autoscaler_create(
        actor=None,
        tenant=world.acme,
        pool=VMPool.objects.get(name="gone"),
        max_replicas=4,
        target=50,
    )
    client = api(getattr(world, who))
    new_scaler = {
        "metadata": {"name": "other"},
        "spec": {**SCALER["spec"], "scaleTargetRef": {"name": "spare"}},
    }
    before = (
        set(VMPool.objects.values_list("name", "replicas", "warm", "deleting")),
        set(Autoscaler.objects.values_list("name", "max_replicas")),
    )
    got = (
        client.get(POOLS).status_code,
        client.get(f"{POOLS}web/").status_code,
        client.post(POOLS, {**BODY, "metadata": {"name": "fresh"}}, format="json").status_code,
        client.post(f"{POOLS}web/scale/", {"replicas": 3}, format="json").status_code,
        client.patch(f"{POOLS}web/", {"spec": {"warm": 1}}, format="json").status_code,
        client.delete(f"{POOLS}other/").status_code,
        client.get(SCALERS).status_code,
        client.get(f"{SCALERS}web/").status_code,
        client.post(SCALERS, new_scaler, format="json").status_code,
        client.patch(f"{SCALERS}web/", {"spec": {"maxReplicas": 6}}, format="json").status_code,
        client.delete(f"{SCALERS}gone/").status_code,
    )
    assert got == ROLE_STATUS[who]
    after = (
        set(VMPool.objects.values_list("name", "replicas", "warm", "deleting")),
        set(Autoscaler.objects.values_list("name", "max_replicas")),
    )
    if who in ("carol", "dave", "outsider"):
        assert after == before
    if who == "carol":
        assert AuditLog.objects.filter(
            actor=world.carol, action="vmpool.scale", outcome=AuditOutcome.DENIED
        ).exists()
    if who in ("alice", "bob"):
        assert VMPool.objects.get(name="web").replicas == 3
        assert VMPool.objects.get(name="web").warm == 1
        assert VMPool.objects.get(name="other").deleting
        assert Autoscaler.objects.get(name="web").max_replicas == 6
        assert not Autoscaler.objects.filter(name="gone").exists()


def test_another_tenants_pools_and_autoscalers_are_not_found(world, api):
    theirs = make_pool(world, "secret", tenant=world.globex)
    autoscaler_services.autoscaler_create(
        actor=None, tenant=world.globex, pool=theirs, max_replicas=3, target=50
    )
    client = api(world.bob)
    problem(client.get("/api/v1/tenants/acme/vmpools/secret/"), 404)
    problem(client.get("/api/v1/tenants/globex/vmpools/secret/"), 404)
    problem(client.get("/api/v1/tenants/acme/autoscalers/secret/"), 404)
    assert client.get(POOLS).json()["items"] == []
    assert client.get(SCALERS).json()["items"] == []
