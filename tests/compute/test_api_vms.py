"""The VM REST API: shape, roles, bad input, Idempotency-Key, If-Match, quota, isolation.

No Celery worker here: creates are accepted (202) and the VMs stay ``Pending``; what the
worker does is covered by the service and end-to-end tests.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from compute.choices import Phase
from compute.models import IdempotencyKey, Image, VirtualMachine
from compute.services import dispatch
from compute.services import vms as vm_services
from tenants import services as tenant_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog, Quota
from tests.conftest import postgres_only

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

PROBLEM = "application/problem+json"
BASE = "/api/v1/tenants/acme/virtualmachines/"
ACTIONS = ["start", "stop", "force-stop", "pause", "resume", "reboot"]


@pytest.fixture
def host(make_host):
    return make_host("node-a", cpus=64, memory_mib=256 * 1024)


@pytest.fixture
def world(demo, host, tiny_image, flavors):
    return demo


def body(name: str = "web1", **spec) -> dict:
    spec = {"image": "tiny", "vcpus": 1, "memoryMiB": 256, **spec}
    return {"metadata": {"name": name}, "spec": spec}


def problem(response, status: int, slug: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    data = json.loads(response.content)
    if slug:
        assert data["type"] == f"https://isotope.dev/problems/{slug}"
    assert data["status"] == status and data["title"] and data["detail"]
    return data


def make_vm(demo, name: str = "web1", phase: str | None = None, tenant=None) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=None, tenant=tenant or demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
    )
    if phase:
        VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase)
        vm.refresh_from_db()
    return vm


def quota_used(tenant) -> tuple:
    q = Quota.objects.get(tenant=tenant)
    return (q.used_vms, q.used_cpu, q.used_memory, q.used_storage)


# --- Shape ------------------------------------------------------------------------------
def test_create_is_accepted_with_the_resource_in_metadata_spec_status_shape(world, api):
    response = api(world.bob).post(
        BASE,
        {
            "metadata": {"name": "web1", "labels": {"app": "web"}},
            "spec": {
                "image": "tiny",
                "vcpus": 2,
                "memoryMiB": 512,
                "diskGiB": 0,
                "desiredState": "stopped",
                "restartPolicy": "Always",
                "nodeSelector": {},
            },
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    data = response.json()
    vm = VirtualMachine.objects.get(tenant=world.acme, name="web1")
    assert data["metadata"] == {
        "name": "web1",
        "tenant": "acme",
        "uid": str(vm.uid),
        "created": data["metadata"]["created"],
        "resourceVersion": str(vm.resource_version),
        "labels": {"app": "web"},
    }
    assert data["metadata"]["created"].endswith("Z")
    assert data["spec"] == {
        "vcpus": 2,
        "memoryMiB": 512,
        "diskGiB": 0,
        "image": "tiny",
        "desiredState": "stopped",
        "restartPolicy": "Always",
        "nodeSelector": {},
        "rootVolume": None,  # no disk: it boots from its image
    }
    assert data["status"]["phase"] == "Pending"
    assert data["status"]["actions"] == ["delete"]
    assert "host" not in data["status"]
    assert response["ETag"] == f'"{vm.resource_version}"'
    assert response["Location"] == f"http://testserver{BASE}web1/"
    assert vm.created_by == world.bob and vm.desired_state == "stopped"


def test_a_flavor_gives_the_size(world, api):
    response = api(world.bob).post(
        BASE,
        {"metadata": {"name": "f1"}, "spec": {"image": "tiny", "flavor": "medium"}},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert (response.json()["spec"]["vcpus"], response.json()["spec"]["memoryMiB"]) == (2, 1024)


def test_the_host_is_shown_to_staff_only(world, api):
    make_vm(world)
    assert "host" not in api(world.alice).get(f"{BASE}web1/").json()["status"]
    world.alice.is_staff = True
    world.alice.save()
    assert api(world.alice).get(f"{BASE}web1/").json()["status"]["host"] == "node-a"
    assert api(world.admin).get(BASE).json()["items"][0]["status"]["host"] == "node-a"


def test_status_actions_follow_the_role_and_the_phase(world, api):
    make_vm(world, phase=Phase.RUNNING)
    bob = api(world.bob).get(f"{BASE}web1/").json()["status"]["actions"]
    carol = api(world.carol).get(f"{BASE}web1/").json()["status"]["actions"]
    assert bob == ["stop", "force-stop", "pause", "reboot", "delete"]
    assert carol == []


def test_the_list_is_paginated_filtered_by_phase_and_only_shows_the_tenants_vms(world, api):
    make_vm(world, "a1", phase=Phase.RUNNING)
    make_vm(world, "a2")
    make_vm(world, "g1", tenant=world.globex)
    data = api(world.bob).get(BASE).json()
    assert data["count"] == 2 and [i["metadata"]["name"] for i in data["items"]] == ["a1", "a2"]
    running = api(world.bob).get(BASE, {"phase": "Running"}).json()
    assert [i["metadata"]["name"] for i in running["items"]] == ["a1"]
    problem(api(world.bob).get(BASE, {"phase": "Sleeping"}), 400, "invalid")
    assert api(world.bob).get(BASE, {"limit": 1}).json()["next"]


# --- Roles and tenants ------------------------------------------------------------------
ROLE_STATUS = {
    # who: (list, get, create, patch, delete, action)
    "alice": (200, 200, 202, 202, 202, 202),
    "bob": (200, 200, 202, 202, 202, 202),
    "carol": (200, 200, 403, 403, 403, 403),
    "dave": (404, 404, 404, 404, 404, 404),
    "outsider": (404, 404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ROLE_STATUS))
def test_the_role_matrix_for_every_vm_endpoint(world, api, who):
    client = api(getattr(world, who))
    expected = ROLE_STATUS[who]
    make_vm(world, "run", phase=Phase.RUNNING)
    make_vm(world, "stopped", phase=Phase.STOPPED)
    make_vm(world, "gone", phase=Phase.STOPPED)
    before = set(VirtualMachine.objects.values_list("name", "phase", "desired_state"))
    got = (
        client.get(BASE).status_code,
        client.get(f"{BASE}run/").status_code,
        client.post(BASE, body("new1"), format="json").status_code,
        client.patch(
            f"{BASE}stopped/", {"spec": {"desiredState": "running"}}, format="json"
        ).status_code,
        client.delete(f"{BASE}gone/").status_code,
        client.post(f"{BASE}run/reboot/").status_code,
    )
    assert got == expected
    if expected[2] != 202:
        # Refused writes changed nothing.
        assert set(VirtualMachine.objects.values_list("name", "phase", "desired_state")) == before


@pytest.mark.parametrize("action", ACTIONS)
def test_a_viewer_cannot_run_any_action_and_the_refusal_is_audited(world, api, action):
    vm = make_vm(world, phase=Phase.RUNNING if action != "resume" else Phase.PAUSED)
    response = api(world.carol).post(f"{BASE}web1/{action}/")
    problem(response, 403, "forbidden")
    assert VirtualMachine.objects.get(pk=vm.pk).phase == vm.phase
    assert AuditLog.objects.filter(
        actor=world.carol, outcome=AuditOutcome.DENIED, tenant=world.acme
    ).exists()


def test_another_tenants_vm_is_not_found_for_every_method(world, api):
    make_vm(world, "secret", tenant=world.globex)
    client = api(world.bob)
    url = "/api/v1/tenants/globex/virtualmachines/secret/"
    for response in (
        client.get(url),
        client.patch(url, {"spec": {"desiredState": "stopped"}}, format="json"),
        client.delete(url),
        client.post(url + "stop/"),
    ):
        problem(response, 404, "not-found")
    # The same name in the user's own tenant does not reach the other tenant's VM.
    problem(client.get(f"{BASE}secret/"), 404, "not-found")


def test_anonymous_requests_are_refused(world):
    make_vm(world)
    client = APIClient()
    for response in (
        client.get(BASE),
        client.post(BASE, body("x1"), format="json"),
        client.get(f"{BASE}web1/"),
        client.post(f"{BASE}web1/stop/"),
    ):
        assert response.status_code in (401, 403)
        assert response["Content-Type"] == PROBLEM
    assert VirtualMachine.objects.count() == 1


# --- Bad input --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body("Web1"), "metadata.name"),
        (body("a" * 64), "metadata.name"),
        (body("-x"), "metadata.name"),
        (body("x-"), "metadata.name"),
        (body("a_b"), "metadata.name"),
        (body("new"), "metadata.name"),  # reserved: /t/<t>/vms/new/ is the create form
        (body(""), "metadata.name"),
        (body(vcpus=0), "spec.vcpus"),
        (body(vcpus=65), "spec.vcpus"),
        (body(vcpus=-1), "spec.vcpus"),
        (body(vcpus=1.5), "spec.vcpus"),
        (body(vcpus="many"), "spec.vcpus"),
        (body(memoryMiB=0), "spec.memoryMiB"),
        (body(memoryMiB=63), "spec.memoryMiB"),
        (body(memoryMiB=10**12), "spec.memoryMiB"),
        (body(memoryMiB=64), "spec.memoryMiB"),  # below the image's minimum (128)
        (body(diskGiB=-1), "spec.diskGiB"),
        (body(diskGiB=10**6), "spec.diskGiB"),
        (body(image="nope"), "spec.image"),
        (body(image="acme-private"), "spec.image"),
        (body(flavor="huge"), "spec.flavor"),
        (body(restartPolicy="Sometimes"), "spec.restartPolicy"),
        (body(desiredState="paused"), "spec.desiredState"),
        (body(nodeSelector={"zone": ["a"]}), "spec.nodeSelector.zone"),
        (body(gpu=1), "spec.gpu"),
        ({"metadata": {"name": "x1"}, "spec": {"image": "tiny"}}, "spec.vcpus"),
        ({"spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 256}}, "metadata"),
    ],
)
def test_bad_input_is_a_field_error_and_creates_nothing(world, api, payload, field):
    # A private image of globex that acme must not be able to use.
    Image.objects.create(
        name="acme-private",
        kind="kernel",
        kernel_path="/k",
        initrd_path="/i",
        public=False,
        tenant=world.globex,
    )
    before = quota_used(world.acme)
    response = api(world.bob).post(BASE, payload, format="json")
    data = problem(response, 400, "invalid")
    assert field in data["errors"], data
    assert VirtualMachine.objects.count() == 0
    assert quota_used(world.acme) == before


def test_a_tenants_private_image_is_usable_by_that_tenant_only(world, api):
    Image.objects.create(
        name="golden",
        kind="kernel",
        kernel_path="/k",
        initrd_path="/i",
        public=False,
        tenant=world.acme,
    )
    assert api(world.bob).post(BASE, body("p1", image="golden"), format="json").status_code == 202
    response = api(world.dave).post(
        "/api/v1/tenants/globex/virtualmachines/", body("p1", image="golden"), format="json"
    )
    assert "spec.image" in problem(response, 400, "invalid")["errors"]


def test_a_taken_name_is_a_field_error(world, api):
    make_vm(world, "web1")
    response = api(world.bob).post(BASE, body("web1"), format="json")
    assert "metadata.name" in problem(response, 400, "invalid")["errors"]
    assert VirtualMachine.objects.count() == 1


def test_the_same_name_in_two_tenants_is_fine(world, api):
    make_vm(world, "web1", tenant=world.globex)
    assert api(world.bob).post(BASE, body("web1"), format="json").status_code == 202


def test_no_host_with_room_is_a_conflict_and_reserves_nothing(world, api, host):
    host.enabled = False
    host.save()
    response = api(world.bob).post(BASE, body("web1"), format="json")
    problem(response, 409, "no-host-available")
    assert VirtualMachine.objects.count() == 0
    assert quota_used(world.acme) == (0, 0, 0, 0)


# --- Quota ------------------------------------------------------------------------------
def test_quota_exceeded_is_a_403_naming_the_resource_and_what_is_left(world, api):
    tenant_services.quota_set(actor=world.admin, tenant=world.acme, limits={"cpu": 3})
    make_vm(world, "w1")
    response = api(world.bob).post(BASE, body("w2", vcpus=4), format="json")
    data = problem(response, 403, "quota-exceeded")
    assert data["resource"] == "cpu"
    assert [Decimal(data[k]) for k in ("requested", "left", "limit")] == [4, 2, 3]
    assert "cpu" in data["errors"]
    assert VirtualMachine.objects.filter(name="w2").count() == 0
    assert quota_used(world.acme)[:2] == (1, 1)


def test_quota_exceeded_lists_every_resource_over_its_limit_each_on_its_field(world, api):
    tenant_services.quota_set(
        actor=world.admin, tenant=world.acme, limits={"cpu": 2, "memory": 1024, "storage": 5}
    )
    response = api(world.bob).post(
        BASE, body("big", vcpus=4, memoryMiB=2048, diskGiB=10), format="json"
    )
    data = problem(response, 403, "quota-exceeded")
    assert [(e["resource"], e["requested"], e["left"], e["limit"]) for e in data["exceeded"]] == [
        ("cpu", "4", "2", "2"),
        ("memory", "2048", "1024", "1024"),
        ("storage", "10", "5", "5"),
    ]
    for resource, field in (
        ("cpu", "spec.vcpus"),
        ("memory", "spec.memoryMiB"),
        ("storage", "spec.diskGiB"),
    ):
        assert data["errors"][resource] == data["errors"][field], resource
        assert resource in data["errors"][field][0]
    assert "vms" not in data["errors"]
    assert "cpu" in data["detail"] and "memory" in data["detail"] and "storage" in data["detail"]
    assert not VirtualMachine.objects.filter(name="big").exists()


@pytest.mark.django_db(transaction=True)
def test_100_concurrent_creates_against_a_quota_of_10_vms_make_exactly_10(
    demo, make_host, tiny_image, monkeypatch
):
    postgres_only()
    make_host("node-a", cpus=64, memory_mib=256 * 1024)
    tenant_services.quota_set(
        actor=demo.admin, tenant=demo.acme, limits={"vms": 10, "cpu": 200, "memory": 10**6}
    )
    # No worker: the VMs stay Pending and nothing is sent to the broker.
    monkeypatch.setattr(dispatch, "provision_request", lambda *vm_ids: None)
    start = threading.Barrier(20)

    def create(n: int) -> int:
        from django.db import connection

        client = APIClient()
        client.force_authenticate(demo.bob)
        try:
            if n < 20:
                start.wait(timeout=30)
            return client.post(BASE, body(f"vm-{n}"), format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(create, range(100)))
    assert codes.count(202) == 10, sorted(codes)
    assert set(codes) == {202, 403}
    assert VirtualMachine.objects.filter(tenant=demo.acme).count() == 10
    assert quota_used(demo.acme)[:2] == (10, 10)


# --- Idempotency-Key --------------------------------------------------------------------
def test_a_retried_create_with_the_same_key_returns_the_first_result(world, api):
    client = api(world.bob)
    first = client.post(BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    VirtualMachine.objects.filter(name="web1").update(phase=Phase.RUNNING)  # time passes
    again = client.post(BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert VirtualMachine.objects.count() == 1
    assert quota_used(world.acme)[0] == 1


def test_the_same_key_with_another_body_is_refused(world, api):
    client = api(world.bob)
    client.post(BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = client.post(BASE, body("web2"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    problem(response, 422, "idempotency-key-reused")
    assert list(VirtualMachine.objects.values_list("name", flat=True)) == ["web1"]


def test_keys_belong_to_one_user(world, api):
    api(world.bob).post(BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = api(world.alice).post(BASE, body("web2"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 202
    assert VirtualMachine.objects.count() == 2


def test_a_refusal_is_the_remembered_answer_but_invalid_input_is_not(world, api):
    tenant_services.quota_set(actor=world.admin, tenant=world.acme, limits={"vms": 0})
    client = api(world.bob)
    first = client.post(BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="q")
    problem(first, 403, "quota-exceeded")
    tenant_services.quota_set(actor=world.admin, tenant=world.acme, limits={"vms": 5})
    again = client.post(BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="q")
    assert again.status_code == 403 and again.json() == first.json()
    assert again["Content-Type"] == PROBLEM
    # A 400 is not stored: the client fixes the body and retries with its key.
    bad = client.post(BASE, body("Bad"), format="json", HTTP_IDEMPOTENCY_KEY="v")
    problem(bad, 400, "invalid")
    assert not IdempotencyKey.objects.filter(key="v").exists()
    assert (
        client.post(BASE, body("good"), format="json", HTTP_IDEMPOTENCY_KEY="v").status_code == 202
    )


def test_an_overlong_key_is_a_field_error(world, api):
    response = api(world.bob).post(
        BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="k" * 256
    )
    assert "Idempotency-Key" in problem(response, 400, "invalid")["errors"]
    assert VirtualMachine.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_one_vm(demo, make_host, tiny_image, monkeypatch):
    postgres_only()
    make_host("node-a")
    monkeypatch.setattr(dispatch, "provision_request", lambda *vm_ids: None)
    start = threading.Barrier(8)

    def create(_):
        from django.db import connection

        client = APIClient()
        client.force_authenticate(demo.bob)
        try:
            start.wait(timeout=30)
            response = client.post(BASE, body("web1"), format="json", HTTP_IDEMPOTENCY_KEY="same")
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, range(8)))
    assert {code for code, _ in results} == {202}
    assert len({json.dumps(b, sort_keys=True) for _, b in results}) == 1
    assert VirtualMachine.objects.count() == 1


# --- PATCH, DELETE, actions, If-Match ---------------------------------------------------
def test_actions_are_accepted_with_the_resource(world, api):
    make_vm(world, phase=Phase.RUNNING)
    response = api(world.bob).post(f"{BASE}web1/stop/")
    assert response.status_code == 202
    data = response.json()
    assert data["status"]["phase"] == "Stopping" and data["spec"]["desiredState"] == "stopped"


def test_an_action_in_the_wrong_phase_is_a_conflict_and_changes_nothing(world, api):
    vm = make_vm(world, phase=Phase.STOPPED)
    data = problem(api(world.bob).post(f"{BASE}web1/pause/"), 409, "conflict")
    assert "status.phase" in data["errors"]
    assert VirtualMachine.objects.get(pk=vm.pk).resource_version == vm.resource_version


def test_a_stale_if_match_is_412_and_changes_nothing(world, api):
    vm = make_vm(world, phase=Phase.RUNNING)
    client = api(world.bob)
    etag = client.get(f"{BASE}web1/")["ETag"]
    VirtualMachine.objects.filter(pk=vm.pk).update(resource_version=vm.resource_version + 1)
    for response in (
        client.post(f"{BASE}web1/stop/", HTTP_IF_MATCH=etag),
        client.patch(
            f"{BASE}web1/", {"spec": {"desiredState": "stopped"}}, format="json", HTTP_IF_MATCH=etag
        ),
        client.delete(f"{BASE}web1/", HTTP_IF_MATCH=etag),
    ):
        problem(response, 412, "precondition-failed")
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
    fresh = client.get(f"{BASE}web1/")["ETag"]
    assert client.post(f"{BASE}web1/stop/", HTTP_IF_MATCH=fresh).status_code == 202


def test_patch_desired_state_stops_and_resize_needs_stopped(world, api):
    vm = make_vm(world, phase=Phase.RUNNING)
    client = api(world.bob)
    data = problem(
        client.patch(f"{BASE}web1/", {"spec": {"vcpus": 2}}, format="json"), 409, "conflict"
    )
    assert "status.phase" in data["errors"]
    response = client.patch(f"{BASE}web1/", {"spec": {"desiredState": "stopped"}}, format="json")
    assert response.status_code == 202 and response.json()["status"]["phase"] == "Stopping"
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.STOPPED)
    response = client.patch(
        f"{BASE}web1/", {"spec": {"vcpus": 2, "memoryMiB": 1024}}, format="json"
    )
    assert response.status_code == 202, response.content
    assert (response.json()["spec"]["vcpus"], response.json()["spec"]["memoryMiB"]) == (2, 1024)
    assert quota_used(world.acme)[1:3] == (2, 1024)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"image": "tiny"}, "spec.image"),
        ({"diskGiB": 5}, "spec.diskGiB"),
        ({"desiredState": "deleted"}, "spec.desiredState"),
        ({"vcpus": 0}, "spec.vcpus"),
    ],
)
def test_a_bad_patch_is_a_field_error_and_changes_nothing(world, api, spec, field):
    vm = make_vm(world, phase=Phase.STOPPED)
    response = api(world.bob).patch(f"{BASE}web1/", {"spec": spec}, format="json")
    assert field in problem(response, 400, "invalid")["errors"]
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert (fresh.vcpus, fresh.resource_version) == (vm.vcpus, vm.resource_version)


def test_patch_labels_replaces_them_in_any_phase_and_honours_if_match(world, api):
    vm = make_vm(world, phase=Phase.RUNNING)
    client = api(world.bob)
    etag = client.get(f"{BASE}web1/")["ETag"]
    response = client.patch(
        f"{BASE}web1/",
        {"metadata": {"labels": {"app": "web", "tier": ""}}},
        format="json",
        HTTP_IF_MATCH=etag,
    )
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["metadata"]["labels"] == {"app": "web", "tier": ""}
    assert data["status"]["phase"] == "Running"
    assert response["ETag"] == f'"{vm.resource_version + 1}"' != etag
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web", "tier": ""}
    assert AuditLog.objects.filter(action="vm.relabel", actor=world.bob).exists()

    # The old ETag is stale now: 412, nothing changed.
    problem(
        client.patch(
            f"{BASE}web1/", {"metadata": {"labels": {}}}, format="json", HTTP_IF_MATCH=etag
        ),
        412,
        "precondition-failed",
    )
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web", "tier": ""}
    # Labels and a desired state together, in one change.
    response = client.patch(
        f"{BASE}web1/",
        {"metadata": {"labels": {}}, "spec": {"desiredState": "stopped"}},
        format="json",
        HTTP_IF_MATCH=response["ETag"],
    )
    assert response.status_code == 202, response.content
    assert response.json()["metadata"]["labels"] == {}
    assert response.json()["status"]["phase"] == "Stopping"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"metadata": {"labels": {"bad key": "x"}}}, "metadata.labels"),
        ({"metadata": {"labels": {"app": "-web"}}}, "metadata.labels"),
        ({"metadata": {"labels": "app=web"}}, "metadata.labels"),
        ({"metadata": {}}, "metadata.labels"),
        ({"metadata": {"name": "other"}}, "metadata.name"),
        ({}, "spec"),
    ],
)
def test_bad_labels_in_a_patch_are_a_field_error_and_change_nothing(world, api, data, field):
    vm = make_vm(world, phase=Phase.STOPPED)
    VirtualMachine.objects.filter(pk=vm.pk).update(labels={"app": "web"})
    vm.refresh_from_db()
    response = api(world.bob).patch(f"{BASE}web1/", data, format="json")
    assert field in problem(response, 400, "invalid")["errors"]
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert (fresh.labels, fresh.resource_version) == ({"app": "web"}, vm.resource_version)


def test_labels_of_a_vm_can_be_changed_by_operators_only_and_not_in_another_tenant(world, api):
    vm = make_vm(world, phase=Phase.RUNNING)
    make_vm(world, "secret", tenant=world.globex)
    change = {"metadata": {"labels": {"app": "web"}}}
    problem(api(world.carol).patch(f"{BASE}web1/", change, format="json"), 403, "forbidden")
    assert AuditLog.objects.filter(
        actor=world.carol, outcome=AuditOutcome.DENIED, tenant=world.acme
    ).exists()
    problem(
        api(world.bob).patch(
            "/api/v1/tenants/globex/virtualmachines/secret/", change, format="json"
        ),
        404,
        "not-found",
    )
    problem(api(world.dave).patch(f"{BASE}web1/", change, format="json"), 404, "not-found")
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {}
    assert VirtualMachine.objects.get(name="secret").labels == {}
    assert api(world.alice).patch(f"{BASE}web1/", change, format="json").status_code == 202


def test_delete_is_accepted_and_shows_deleting(world, api):
    make_vm(world, phase=Phase.STOPPED)
    response = api(world.bob).delete(f"{BASE}web1/")
    assert response.status_code == 202
    assert response.json()["status"]["phase"] == "Deleting"
    assert response.json()["status"]["actions"] == []
    problem(api(world.bob).delete(f"{BASE}web1/"), 409, "conflict")


def test_token_authentication_works_for_the_vm_api(world):
    _, key = tenant_services.token_create(user=world.bob, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post(BASE, body("ci1"), format="json").status_code == 202
