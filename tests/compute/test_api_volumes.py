"""The volume REST API: shape, roles, isolation, bad input, quota, Idempotency-Key,
If-Match, and the attach/detach/resize subresources.

No Celery worker here: creates are accepted (202) and stay ``Pending``; tests that need
a Ready volume or a Running VM set the phase (what the worker would observe)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from compute.choices import Phase, VolumePhase
from compute.models import VirtualMachine, Volume
from compute.services import vms as vm_services
from tenants import services as tenant_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog, Quota, Reservation

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

PROBLEM = "application/problem+json"
BASE = "/api/v1/tenants/acme/volumes/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    return demo


def body(name: str = "data1", **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {"sizeGiB": 5, **spec}}


def problem(response, status: int, slug: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    data = json.loads(response.content)
    if slug:
        assert data["type"] == f"https://isotope.dev/problems/{slug}"
    return data


def make_volume(demo, name="data1", phase=VolumePhase.READY, tenant=None, size=5) -> Volume:
    from compute.services import volumes as volume_services

    volume = volume_services.volume_create(
        actor=None, tenant=tenant or demo.acme, name=name, size_gib=size
    )
    Volume.objects.filter(pk=volume.pk).update(phase=phase, capacity_gib=size)
    return Volume.objects.get(pk=volume.pk)


def make_vm(demo, name="web1", phase=Phase.RUNNING, tenant=None) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=None, tenant=tenant or demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase)
    return VirtualMachine.objects.get(pk=vm.pk)


def used_storage(tenant) -> int:
    return Quota.objects.get(tenant=tenant).used_storage


# --- Shape -------------------------------------------------------------------------------
def test_create_is_accepted_in_the_metadata_spec_status_shape(world, api):
    response = api(world.bob).post(BASE, body(labels=None) | body(), format="json")
    assert response.status_code == 202, response.content
    assert response["Location"].endswith("/api/v1/tenants/acme/volumes/data1/")
    data = response.json()
    assert response["ETag"] == f'"{data["metadata"]["resourceVersion"]}"'
    assert data["metadata"]["name"] == "data1" and data["metadata"]["tenant"] == "acme"
    assert data["spec"] == {
        "sizeGiB": 5,
        "storageClass": "local",
        "format": "qcow2",
        "source": {"kind": "blank", "name": None},
        "attachment": None,
        "deleteWithVM": False,
    }
    assert data["status"]["phase"] == "Pending"
    assert "host" not in data["status"] and "pool" not in data["status"]
    assert used_storage(world.acme) == 5
    got = api(world.carol).get(f"{BASE}data1/").json()
    assert got["metadata"]["uid"] == data["metadata"]["uid"]
    assert got["status"]["actions"] == []


def test_placement_is_shown_to_staff_only(world, api):
    make_volume(world)
    status = api(world.admin).get(f"{BASE}data1/").json()["status"]
    assert status["host"] == "node-a" and status["pool"] == "isotope-volumes"
    assert status["backendName"].startswith("vol-")
    assert "host" not in api(world.alice).get(f"{BASE}data1/").json()["status"]


def test_the_list_filters_by_volume_phase_and_shows_only_the_tenants_volumes(world, api):
    make_volume(world, "a")
    make_volume(world, "b", phase=VolumePhase.PENDING)
    make_volume(world, "c", tenant=world.globex)
    client = api(world.bob)
    names = [v["metadata"]["name"] for v in client.get(BASE).json()["items"]]
    assert names == ["a", "b"]
    ready = client.get(BASE, {"phase": "Ready"}).json()["items"]
    assert [v["metadata"]["name"] for v in ready] == ["a"]
    data = problem(client.get(BASE, {"phase": "Running"}), 400)
    assert "Ready" in data["errors"]["phase"][0]


# --- Roles and tenants ---------------------------------------------------------------------
ROLE_STATUS = {
    # who: (list, get, create, attach, resize, detach, delete)
    "alice": (200, 200, 202, 202, 202, 202, 202),
    "bob": (200, 200, 202, 202, 202, 202, 403),
    "carol": (200, 200, 403, 403, 403, 403, 403),
    "dave": (404, 404, 404, 404, 404, 404, 404),
    "outsider": (404, 404, 404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ROLE_STATUS))
def test_the_role_matrix_for_every_volume_endpoint(world, api, who):
    client = api(getattr(world, who))
    make_vm(world)
    make_volume(world, "free")
    make_volume(world, "grow")
    attached = make_volume(world, "used")
    Volume.objects.filter(pk=attached.pk).update(
        vm=VirtualMachine.objects.get(name="web1"), device="vdc", phase=VolumePhase.ATTACHED
    )
    make_volume(world, "gone")
    before = set(Volume.objects.values_list("name", "phase", "size_gib", "vm_id"))
    got = (
        client.get(BASE).status_code,
        client.get(f"{BASE}free/").status_code,
        client.post(BASE, body("new1"), format="json").status_code,
        client.post(f"{BASE}free/attach/", {"vm": "web1"}, format="json").status_code,
        client.post(f"{BASE}grow/resize/", {"sizeGiB": 9}, format="json").status_code,
        client.post(f"{BASE}used/detach/").status_code,
        client.delete(f"{BASE}gone/").status_code,
    )
    assert got == ROLE_STATUS[who]
    if who in ("carol", "dave", "outsider"):
        assert set(Volume.objects.values_list("name", "phase", "size_gib", "vm_id")) == before
    if who == "bob":
        assert Volume.objects.get(name="gone").phase == VolumePhase.READY
        assert AuditLog.objects.filter(
            actor=world.bob, action="volume.delete", outcome=AuditOutcome.DENIED
        ).exists()


def test_another_tenants_volume_and_vm_are_not_found(world, api):
    make_volume(world, "secret", tenant=world.globex)
    make_vm(world, "theirs", tenant=world.globex)
    mine = make_volume(world, "mine")
    client = api(world.bob)
    url = "/api/v1/tenants/globex/volumes/secret/"
    for response in (
        client.get(url),
        client.delete(url),
        client.post(url + "resize/", {"sizeGiB": 9}, format="json"),
        client.post(url + "attach/", {"vm": "theirs"}, format="json"),
        client.post(url + "detach/"),
    ):
        problem(response, 404, "not-found")
    # Attaching my volume to another tenant's VM: that VM does not exist for me.
    problem(client.post(f"{BASE}mine/attach/", {"vm": "theirs"}, format="json"), 404)
    problem(client.post(BASE, body("x", attachment={"vm": "theirs"}), format="json"), 404)
    assert Volume.objects.get(pk=mine.pk).vm is None
    assert not Volume.objects.filter(name="x").exists()


def test_anonymous_requests_are_refused(world):
    make_volume(world)
    client = APIClient()
    for response in (
        client.get(BASE),
        client.post(BASE, body("x1"), format="json"),
        client.post(f"{BASE}data1/resize/", {"sizeGiB": 9}, format="json"),
    ):
        assert response.status_code in (401, 403)
        assert response["Content-Type"] == PROBLEM
    assert Volume.objects.count() == 1


# --- Bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body("Bad_Name"), "metadata.name"),
        (body("new"), "metadata.name"),
        (body("x" * 64), "metadata.name"),
        (body(sizeGiB=0), "spec.sizeGiB"),
        (body(sizeGiB=-3), "spec.sizeGiB"),
        (body(sizeGiB=10**7), "spec.sizeGiB"),
        (body(sizeGiB="lots"), "spec.sizeGiB"),
        (body(storageClass="nfs"), "spec.storageClass"),
        (body(format="vmdk"), "spec.format"),
        (body(format="filesystem"), "spec.format"),
        (body(image="tiny"), "spec.image"),
        (body(surprise=1), "spec.surprise"),
        ({"metadata": {"name": "a"}}, "spec"),
        ({"metadata": {"name": "a"}, "spec": {"sizeGiB": 1}, "status": {}}, "status"),
        (body(attachment={"vm": "web1", "device": "vda"}), "spec.attachment.device"),
    ],
)
def test_bad_input_is_a_field_error_and_creates_nothing(world, api, payload, field):
    make_vm(world)
    data = problem(api(world.bob).post(BASE, payload, format="json"), 400)
    flat = json.dumps(data["errors"])
    assert field.split(".")[-1] in flat, data
    assert not Volume.objects.exists()
    assert used_storage(world.acme) == 0


def test_quota_exceeded_is_a_403_naming_storage_and_what_is_left(world, api):
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"storage": 8})
    make_volume(world, "a", size=6)
    data = problem(api(world.bob).post(BASE, body("b", sizeGiB=3), format="json"), 403)
    assert data["type"].endswith("quota-exceeded")
    assert "2 GiB left" in data["detail"]
    assert "storage" in data["errors"] and "spec.sizeGiB" in data["errors"]
    problem(api(world.bob).post(f"{BASE}a/resize/", {"sizeGiB": 9}, format="json"), 403)
    assert used_storage(world.acme) == 6
    assert Volume.objects.get(name="a").size_gib == 6


def test_shrinking_and_bad_sizes_are_refused_and_change_nothing(world, api):
    make_volume(world, "a", size=5)
    client = api(world.bob)
    for size in (5, 4, 0):
        data = problem(client.post(f"{BASE}a/resize/", {"sizeGiB": size}, format="json"), 400)
        assert "spec.sizeGiB" in data["errors"]
    problem(client.post(f"{BASE}a/resize/", {"sizeGiB": "x"}, format="json"), 400)
    problem(client.post(f"{BASE}a/resize/", {}, format="json"), 400)
    assert Volume.objects.get(name="a").size_gib == 5 and used_storage(world.acme) == 5


# --- Conventions -----------------------------------------------------------------------------
def test_a_retried_create_with_the_same_key_returns_the_first_result(world, api):
    client = api(world.bob)
    headers = {"HTTP_IDEMPOTENCY_KEY": "vol-key-1"}
    first = client.post(BASE, body(), format="json", **headers)
    again = client.post(BASE, body(), format="json", **headers)
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["metadata"]["uid"] == first.json()["metadata"]["uid"]
    assert Volume.objects.count() == 1 and used_storage(world.acme) == 5
    assert Reservation.objects.filter(released__isnull=True, kind="volume").count() == 1
    other = client.post(BASE, body(sizeGiB=6), format="json", **headers)
    problem(other, 422)


def test_a_stale_if_match_is_412_and_changes_nothing(world, api):
    volume = make_volume(world, "a")
    client = api(world.bob)
    stale = f'"{volume.resource_version}"'
    Volume.objects.filter(pk=volume.pk).update(resource_version=volume.resource_version + 1)
    response = client.post(f"{BASE}a/resize/", {"sizeGiB": 9}, format="json", HTTP_IF_MATCH=stale)
    problem(response, 412)
    assert Volume.objects.get(pk=volume.pk).size_gib == 5
    fresh = f'"{volume.resource_version + 1}"'
    response = client.post(f"{BASE}a/resize/", {"sizeGiB": 9}, format="json", HTTP_IF_MATCH=fresh)
    assert response.status_code == 202
    assert response.json()["spec"]["sizeGiB"] == 9 and used_storage(world.acme) == 9


def test_attach_detach_and_delete_are_accepted_and_conflicts_are_409(world, api):
    vm = make_vm(world)
    make_volume(world, "a")
    client = api(world.alice)
    data = client.post(f"{BASE}a/attach/", {"vm": "web1"}, format="json").json()
    assert data["spec"]["attachment"] == {"vm": "web1", "device": "vdb"}
    assert data["status"]["attachedTo"] is None  # until the worker did it
    problem(client.post(f"{BASE}a/attach/", {"vm": "web1"}, format="json"), 409, "conflict")
    problem(client.delete(f"{BASE}a/"), 409, "conflict")
    Volume.objects.filter(name="a").update(
        phase=VolumePhase.ATTACHED, attached_domain=vm.domain_name, attached_device="vdb"
    )
    got = client.get(f"{BASE}a/").json()
    assert got["status"]["attachedTo"] == {"vm": "web1", "device": "vdb"}
    assert got["status"]["actions"] == ["detach", "resize"]
    detached = client.post(f"{BASE}a/detach/")
    assert detached.status_code == 202 and detached.json()["spec"]["attachment"] is None
    problem(client.post(f"{BASE}a/detach/"), 409)
    stopped = make_vm(world, "busy", phase=Phase.MIGRATING)
    make_volume(world, "b")
    problem(client.post(f"{BASE}b/attach/", {"vm": stopped.name}, format="json"), 409)
    problem(client.post(f"{BASE}b/attach/", {"vm": "nope"}, format="json"), 404)
    problem(client.post(f"{BASE}b/attach/", {}, format="json"), 400)
    deleted = client.delete(f"{BASE}b/")
    assert deleted.status_code == 202 and deleted.json()["status"]["phase"] == "Deleting"


def test_a_volume_can_be_created_attached_to_a_vm(world, api):
    make_vm(world)
    response = api(world.bob).post(
        BASE, body("logs", attachment={"vm": "web1", "device": "vdd"}), format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["spec"]["attachment"] == {"vm": "web1", "device": "vdd"}


def test_token_authentication_works_for_the_volume_api(world):
    _token, key = tenant_services.token_create(user=world.bob, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post(BASE, body(), format="json").status_code == 202
    assert client.get(BASE).json()["count"] == 1


# --- Kubernetes volumes and workload mounts (no cluster reached: the tier covers it) ----
def test_a_cluster_volume_is_a_claim_that_workloads_mount(world, fake_cluster, api):
    client = api(world.bob)
    data = client.post(BASE, body("pgdata", storageClass="cluster"), format="json").json()
    assert data["spec"]["storageClass"] == "cluster" and data["spec"]["format"] == "filesystem"
    assert data["status"]["claimName"] == "pgdata"
    assert used_storage(world.acme) == 5
    problem(client.post(BASE, body("x", storageClass="cluster", image="tiny"), format="json"), 400)
    mount = {"volume": "pgdata", "mountPath": "/var/lib/postgresql", "readOnly": True}
    workload = {
        "metadata": {"name": "db"},
        "spec": {"image": "postgres:16", "volumes": [mount]},
    }
    response = client.post("/api/v1/tenants/acme/workloads/", workload, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["spec"]["volumes"] == [mount]
    # In use by a workload: the volume cannot be deleted.
    Volume.objects.filter(name="pgdata").update(phase=VolumePhase.READY)
    data = problem(api(world.alice).delete(f"{BASE}pgdata/"), 409)
    assert "mounted by db" in data["detail"]


@pytest.mark.parametrize(
    "mounts",
    [
        [{"volume": "nope", "mountPath": "/d"}],
        [{"volume": "pgdata", "mountPath": "d"}],
        [{"volume": "pgdata"}],
        [{"volume": "pgdata", "mountPath": "/d", "extra": 1}],
        "pgdata:/d",
    ],
)
def test_bad_workload_mounts_are_field_errors(world, fake_cluster, api, mounts):
    api(world.bob).post(BASE, body("pgdata", storageClass="cluster"), format="json")
    workload = {"metadata": {"name": "db"}, "spec": {"image": "postgres:16", "volumes": mounts}}
    data = problem(
        api(world.bob).post("/api/v1/tenants/acme/workloads/", workload, format="json"), 400
    )
    assert any(key.startswith("spec.volumes") or key == "volumes" for key in data["errors"]), data


# --- Boot from volume ----------------------------------------------------------------------
def test_a_vm_is_created_from_an_existing_volume_through_the_api(world, api):
    make_volume(world, "system", size=6)
    client = api(world.bob)
    vm_body = {
        "metadata": {"name": "fromvol"},
        "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 256, "rootVolume": "system"},
    }
    response = client.post("/api/v1/tenants/acme/virtualmachines/", vm_body, format="json")
    assert response.status_code == 202, response.content
    spec = response.json()["spec"]
    assert (spec["rootVolume"], spec["diskGiB"]) == ("system", 6)
    volume = Volume.objects.get(name="system")
    assert (volume.vm.name, volume.device, volume.delete_with_vm) == ("fromvol", "vda", False)
    assert used_storage(world.acme) == 6  # the volume's, charged once
    vm_body["metadata"]["name"] = "twin"
    problem(client.post("/api/v1/tenants/acme/virtualmachines/", vm_body, format="json"), 409)
    vm_body["spec"]["rootVolume"] = "nope"
    data = problem(
        client.post("/api/v1/tenants/acme/virtualmachines/", vm_body, format="json"), 400
    )
    assert "spec.rootVolume" in data["errors"]
    assert not VirtualMachine.objects.filter(name="twin").exists()
    listed = client.get("/api/v1/tenants/acme/virtualmachines/").json()["items"]
    assert [v["spec"]["rootVolume"] for v in listed] == ["system"]
