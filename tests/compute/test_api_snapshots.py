"""The snapshot and clone API: shape, the role matrix, other tenants, bad input,
Idempotency-Key, If-Match and the restore confirmation.

No Celery worker here: requests are accepted (202) and stay Pending; tests that need a
Ready snapshot set the phase (what the worker would observe)."""

from __future__ import annotations

import json

import pytest

from compute.choices import Phase, SnapshotPhase, VolumePhase
from compute.models import Snapshot, SnapshotSchedule, VirtualMachine, Volume
from compute.services import snapshots as snapshot_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_volumes import make_vm, make_volume, problem, used_storage

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

BASE = "/api/v1/tenants/acme/volumes/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    return demo


def make_snapshot(demo, volume, name="s1", phase=SnapshotPhase.READY) -> Snapshot:
    snapshot = snapshot_services.snapshot_create(actor=None, volume=volume, name=name)
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=phase)
    return Snapshot.objects.get(pk=snapshot.pk)


def test_a_snapshot_is_accepted_in_the_metadata_spec_status_shape(world, api):
    make_volume(world)
    response = api(world.bob).post(
        f"{BASE}data1/snapshots/", {"metadata": {"name": "s1"}}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response["Location"].endswith("/api/v1/tenants/acme/volumes/data1/snapshots/s1/")
    data = response.json()
    assert response["ETag"] == f'"{data["metadata"]["resourceVersion"]}"'
    assert data["spec"] == {"volume": "data1", "sizeGiB": 5}
    assert data["status"]["phase"] == "Pending" and "pool" not in data["status"]
    assert used_storage(world.acme) == 10
    listed = api(world.carol).get(f"{BASE}data1/snapshots/").json()["items"]
    assert [s["metadata"]["name"] for s in listed] == ["s1"]
    assert api(world.admin).get(f"{BASE}data1/snapshots/s1/").json()["status"]["backendName"]


ROLE_STATUS = {
    # who: (list, get, take, clone, restore, delete)
    "alice": (200, 200, 202, 202, 202, 202),
    "bob": (200, 200, 202, 202, 202, 403),
    "carol": (200, 200, 403, 403, 403, 403),
    "dave": (404, 404, 404, 404, 404, 404),
    "outsider": (404, 404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ROLE_STATUS))
def test_the_role_matrix_for_every_snapshot_endpoint(world, api, who):
    client = api(getattr(world, who))
    volume = make_volume(world)
    make_snapshot(world, volume, "old")
    make_snapshot(world, volume, "gone")
    before = set(Snapshot.objects.values_list("name", "phase"))
    got = (
        client.get(f"{BASE}data1/snapshots/").status_code,
        client.get(f"{BASE}data1/snapshots/old/").status_code,
        client.post(
            f"{BASE}data1/snapshots/", {"metadata": {"name": "new"}}, format="json"
        ).status_code,
        client.post(f"{BASE}data1/clone/", {"name": "copy"}, format="json").status_code,
        client.post(
            f"{BASE}data1/snapshots/old/restore/", {"confirm": "data1"}, format="json"
        ).status_code,
        client.delete(f"{BASE}data1/snapshots/gone/").status_code,
    )
    assert got == ROLE_STATUS[who]
    if who in ("carol", "dave", "outsider"):
        assert set(Snapshot.objects.values_list("name", "phase")) == before
        assert Volume.objects.get(name="data1").phase == VolumePhase.READY
        assert not Volume.objects.filter(name="copy").exists()
    if who == "bob":
        assert Snapshot.objects.get(name="gone").phase == SnapshotPhase.READY
        assert AuditLog.objects.filter(
            actor=world.bob, action="snapshot.delete", outcome=AuditOutcome.DENIED
        ).exists()
    if who == "alice":
        assert Volume.objects.get(name="data1").phase == VolumePhase.RESTORING
        assert Volume.objects.get(name="copy").source_name == "data1"


def test_another_tenants_volume_and_snapshots_are_not_found(world, api):
    theirs = make_volume(world, "secret", tenant=world.globex)
    make_snapshot(world, theirs, "s1")
    client = api(world.bob)
    url = "/api/v1/tenants/globex/volumes/secret/"
    for response in (
        client.get(url + "snapshots/"),
        client.get(url + "snapshots/s1/"),
        client.post(url + "snapshots/", {"metadata": {"name": "x"}}, format="json"),
        client.post(url + "snapshots/s1/restore/", {"confirm": "secret"}, format="json"),
        client.delete(url + "snapshots/s1/"),
        client.post(url + "clone/", {"name": "mine"}, format="json"),
        client.get(f"{BASE}secret/snapshots/"),
    ):
        problem(response, 404, "not-found")
    assert Snapshot.objects.get().phase == SnapshotPhase.READY
    assert Volume.objects.count() == 1


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("snapshots/", {"metadata": {"name": "Bad_Name"}}, "metadata.name"),
        ("snapshots/", {"metadata": {"name": "s1"}, "spec": {}}, "spec"),
        ("snapshots/", {}, "metadata"),
        ("snapshots/s1/restore/", {}, "confirm"),
        ("snapshots/s1/restore/", {"confirm": "other"}, "confirm"),
        ("clone/", {"name": "data1"}, "name"),
        ("clone/", {"name": "-x-"}, "name"),
        ("clone/", {"name": "ok", "size": 3}, "size"),
    ],
)
def test_bad_input_is_a_field_error_and_changes_nothing(world, api, path, payload, field):
    volume = make_volume(world)
    make_snapshot(world, volume, "s1")
    data = problem(api(world.bob).post(f"{BASE}data1/{path}", payload, format="json"), 400)
    assert field.split(".")[-1] in json.dumps(data["errors"]), data
    assert Snapshot.objects.count() == 1 and Volume.objects.count() == 1
    assert Volume.objects.get().phase == VolumePhase.READY
    assert used_storage(world.acme) == 10


def test_restore_of_a_running_vms_disk_is_a_409_and_changes_nothing(world, api):
    vm = make_vm(world, phase=Phase.STOPPED)
    volume = make_volume(world)
    Volume.objects.filter(pk=volume.pk).update(vm=vm, device="vdb", phase=VolumePhase.ATTACHED)
    make_snapshot(world, Volume.objects.get(pk=volume.pk), "s1")
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    client = api(world.bob)
    data = problem(
        client.post(f"{BASE}data1/snapshots/s1/restore/", {"confirm": "data1"}, format="json"),
        409,
    )
    assert "stop" in data["detail"]
    problem(
        client.post(f"{BASE}data1/snapshots/", {"metadata": {"name": "s2"}}, format="json"), 409
    )
    problem(client.post(f"{BASE}data1/clone/", {"name": "copy"}, format="json"), 409)
    assert Volume.objects.get(pk=volume.pk).phase == VolumePhase.ATTACHED
    assert Snapshot.objects.get().phase == SnapshotPhase.READY and Volume.objects.count() == 1
    # Its snapshot is copied all the same: what the disk held then.
    data = problem(
        client.post(f"{BASE}data1/clone/", {"name": "x", "snapshot": "nope"}, format="json"), 400
    )
    assert "snapshot" in data["errors"], data
    copy = client.post(f"{BASE}data1/clone/", {"name": "then", "snapshot": "s1"}, format="json")
    assert copy.status_code == 202, copy.content
    assert copy["Location"].endswith("/api/v1/tenants/acme/volumes/then/")
    assert Volume.objects.get(name="then").source_name == "data1@s1"


def test_if_match_and_idempotency_key(world, api):
    volume = make_volume(world)
    snapshot = make_snapshot(world, volume, "s1")
    client = api(world.alice)
    url = f"{BASE}data1/snapshots/s1/"
    problem(client.delete(url, HTTP_IF_MATCH='"999"'), 412)
    assert Snapshot.objects.get(pk=snapshot.pk).phase == SnapshotPhase.READY
    response = client.delete(url, HTTP_IF_MATCH=f'"{snapshot.resource_version}"')
    assert response.status_code == 202 and response.json()["status"]["phase"] == "Deleting"

    first = client.post(
        f"{BASE}data1/snapshots/",
        {"metadata": {"name": "s2"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    again = client.post(
        f"{BASE}data1/snapshots/",
        {"metadata": {"name": "s2"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert Snapshot.objects.filter(name="s2").count() == 1
    clone = client.post(
        f"{BASE}data1/clone/", {"name": "copy"}, format="json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert clone.status_code == 202
    assert clone["Location"].endswith("/api/v1/tenants/acme/volumes/copy/")


# --- Snapshots of a VM ------------------------------------------------------------------
VM_BASE = "/api/v1/tenants/acme/virtualmachines/"


def stopped_vm_with_disk(world):
    vm = make_vm(world, phase=Phase.STOPPED)
    volume = make_volume(world)
    Volume.objects.filter(pk=volume.pk).update(vm=vm, device="vdb", phase=VolumePhase.ATTACHED)
    return vm


VM_ROLE_STATUS = {
    # who: (list, take, get, restore, delete)
    "alice": (200, 202, 200, 202, 202),
    "bob": (200, 202, 200, 202, 403),
    "carol": (200, 403, 404, 403, 403),
    "dave": (404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(VM_ROLE_STATUS))
def test_vm_snapshots_take_restore_delete_by_role(world, api, who):
    vm = stopped_vm_with_disk(world)
    for name in ("old", "gone"):
        snapshot_services.vm_snapshot_create(actor=world.alice, vm=vm, name=name)
    Snapshot.objects.update(phase=SnapshotPhase.READY)
    client = api(getattr(world, who))
    url = f"{VM_BASE}web1/snapshots/"
    taken = client.post(url, {"metadata": {"name": "new"}}, format="json")
    got = (
        client.get(url).status_code,
        taken.status_code,
        client.get(f"{url}new/").status_code,
        client.post(f"{url}old/restore/", {"confirm": "web1"}, format="json").status_code,
        client.delete(f"{url}gone/").status_code,
    )
    assert got == VM_ROLE_STATUS[who]
    if who == "bob":
        data = taken.json()
        assert taken["Location"].endswith("/virtualmachines/web1/snapshots/new/")
        assert data["metadata"]["vm"] == "web1" and data["status"]["phase"] == "Pending"
        assert data["spec"]["disks"] == [{"volume": "data1", "device": "vdb", "sizeGiB": 5}]
        assert Volume.objects.get(name="data1").phase == VolumePhase.RESTORING
    if who in ("carol", "dave"):
        assert set(Snapshot.objects.values_list("name", "phase")) == {
            ("old", "Ready"),
            ("gone", "Ready"),
        }


def test_vm_snapshot_refusals_are_problems_that_change_nothing(world, api):
    vm = stopped_vm_with_disk(world)
    make_vm(world, "theirs", tenant=world.globex)
    client = api(world.bob)
    url = f"{VM_BASE}web1/snapshots/"
    problem(client.post(url, {"metadata": {"name": "Bad"}}, format="json"), 400)
    problem(client.get(f"{url}nope/"), 404)
    problem(client.post(f"{url}nope/restore/", {"confirm": "web1"}, format="json"), 404)
    problem(client.get("/api/v1/tenants/globex/virtualmachines/theirs/snapshots/"), 404)
    snapshot_services.vm_snapshot_create(actor=world.bob, vm=vm, name="s1")
    Snapshot.objects.update(phase=SnapshotPhase.READY)
    problem(client.post(f"{url}s1/restore/", {"confirm": "web2"}, format="json"), 400)
    # A stopped VM has no memory to save; "memory" is a boolean; nothing else in spec.
    with_memory = {"metadata": {"name": "s2"}, "spec": {"memory": True}}
    assert "memory" in problem(client.post(url, with_memory, format="json"), 400)["errors"]
    odd = {"metadata": {"name": "s2"}, "spec": {"memory": "maybe"}}
    problem(client.post(url, odd, format="json"), 400)
    problem(client.post(url, {"metadata": {"name": "s2"}, "spec": {"x": 1}}, format="json"), 400)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    problem(client.post(f"{url}s1/restore/", {"confirm": "web1"}, format="json"), 409)
    # The test driver's host cannot save memory: a clear refusal, nothing recorded.
    refused = problem(client.post(url, with_memory, format="json"), 409)
    assert "without memory" in refused["detail"]
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.MIGRATING)
    refused = problem(client.post(url, {"metadata": {"name": "s2"}}, format="json"), 409)
    assert "Running, Paused or Stopped" in refused["detail"]
    assert list(Snapshot.objects.values_list("name", "phase")) == [("s1", "Ready")]
    assert Volume.objects.get().phase == VolumePhase.ATTACHED


# --- Snapshot schedules ------------------------------------------------------------------
SCHEDULE_ROLE_STATUS = {
    # who: (get before, put, get, put on the VM, delete)
    "alice": (404, 200, 200, 200, 204),
    "bob": (404, 200, 200, 200, 204),
    "carol": (404, 403, 404, 403, 403),
    "dave": (404, 404, 404, 404, 404),
    "outsider": (404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(SCHEDULE_ROLE_STATUS))
def test_the_role_matrix_for_snapshot_schedules(world, api, who):
    client = api(getattr(world, who))
    make_volume(world)
    make_vm(world, phase=Phase.STOPPED)
    url = f"{BASE}data1/snapshotschedule/"
    body = {"spec": {"intervalHours": 6, "keep": 4}}
    got = (
        client.get(url).status_code,
        client.put(url, body, format="json").status_code,
        client.get(url).status_code,
        client.put(
            f"{VM_BASE}web1/snapshotschedule/",
            {"spec": {"dailyAt": "02:30", "keep": 7}},
            format="json",
        ).status_code,
        client.delete(url).status_code,
    )
    assert got == SCHEDULE_ROLE_STATUS[who]
    if who in ("alice", "bob"):
        (left,) = SnapshotSchedule.objects.all()
        assert left.vm.name == "web1" and left.keep == 7 and str(left.daily_at) == "02:30:00"
        assert AuditLog.objects.filter(actor=getattr(world, who), action="snapshot.schedule")
    else:
        assert not SnapshotSchedule.objects.exists()


def test_a_schedule_reads_back_in_the_resource_shape_and_if_match_guards_changes(world, api):
    make_volume(world)
    client = api(world.bob)
    url = f"{BASE}data1/snapshotschedule/"
    data = client.put(url, {"spec": {"intervalHours": 6, "keep": 4}}, format="json").json()
    assert data["spec"] == {
        "target": {"kind": "volume", "name": "data1"},
        "intervalHours": 6,
        "dailyAt": None,
        "keep": 4,
        "enabled": True,
    }
    assert data["status"]["nextRun"].endswith("Z") and data["status"]["lastRun"] is None
    version = data["metadata"]["resourceVersion"]
    problem(
        client.put(
            url, {"spec": {"dailyAt": "01:00", "keep": 2}}, format="json", HTTP_IF_MATCH='"999"'
        ),
        412,
    )
    changed = client.put(
        url,
        {"spec": {"dailyAt": "01:00", "keep": 2, "enabled": False}},
        format="json",
        HTTP_IF_MATCH=f'"{version}"',
    ).json()
    assert changed["spec"]["dailyAt"] == "01:00" and changed["spec"]["intervalHours"] is None
    assert changed["spec"]["enabled"] is False and changed["metadata"]["resourceVersion"] != version
    problem(client.delete(url, HTTP_IF_MATCH=f'"{version}"'), 412)
    assert client.delete(url).status_code == 204
    problem(client.get(url), 404)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"keep": 3}, "spec.intervalHours"),
        ({"intervalHours": 2, "dailyAt": "01:00", "keep": 3}, "spec.intervalHours"),
        ({"intervalHours": 0, "keep": 3}, "spec.intervalHours"),
        ({"dailyAt": "24:00", "keep": 3}, "spec.dailyAt"),
        ({"intervalHours": 2, "keep": 0}, "spec.keep"),
        ({"intervalHours": 2}, "spec.keep"),
        ({"intervalHours": 2, "keep": 2, "every": 1}, "spec.every"),
    ],
)
def test_bad_schedules_are_field_problems_that_change_nothing(world, api, spec, field):
    make_volume(world)
    data = problem(
        api(world.bob).put(f"{BASE}data1/snapshotschedule/", {"spec": spec}, format="json"), 400
    )
    assert field in data["errors"], data
    assert not SnapshotSchedule.objects.exists()


def test_another_tenants_schedule_is_not_found(world, api):
    make_volume(world, "secret", tenant=world.globex)
    client = api(world.bob)
    url = "/api/v1/tenants/globex/volumes/secret/snapshotschedule/"
    problem(client.get(url), 404)
    problem(client.put(url, {"spec": {"intervalHours": 1, "keep": 1}}, format="json"), 404)
    problem(
        client.put(f"{BASE}secret/snapshotschedule/", {"spec": {"keep": 1}}, format="json"), 404
    )


# --- Clone a whole VM ----------------------------------------------------------------------
CLONE_ROLE_STATUS = {"alice": 202, "bob": 202, "carol": 403, "dave": 404, "outsider": 404}


@pytest.mark.parametrize("who", list(CLONE_ROLE_STATUS))
def test_the_role_matrix_for_cloning_a_vm(world, api, who):
    stopped_vm_with_disk(world)
    response = api(getattr(world, who)).post(
        f"{VM_BASE}web1/clone/", {"name": "web2"}, format="json"
    )
    assert response.status_code == CLONE_ROLE_STATUS[who], response.content
    if response.status_code == 202:
        assert response["Location"].endswith("/api/v1/tenants/acme/virtualmachines/web2/")
        data = response.json()
        assert data["metadata"]["name"] == "web2" and data["spec"]["desiredState"] == "stopped"
        (copy,) = Volume.objects.filter(vm__name="web2")
        assert (copy.device, copy.source_name, copy.size_gib) == ("vdb", "data1", 5)
        assert used_storage(world.acme) == 10
    else:
        assert not VirtualMachine.objects.filter(name="web2").exists()
        assert Volume.objects.count() == 1 and used_storage(world.acme) == 5


def test_cloning_a_running_vm_or_a_bad_name_is_a_problem_that_changes_nothing(world, api):
    vm = stopped_vm_with_disk(world)
    client = api(world.bob)
    url = f"{VM_BASE}web1/clone/"
    assert "name" in problem(client.post(url, {"name": "web1"}, format="json"), 400)["errors"]
    assert "name" in problem(client.post(url, {"name": "Bad_"}, format="json"), 400)["errors"]
    assert (
        "size" in problem(client.post(url, {"name": "ok", "size": 1}, format="json"), 400)["errors"]
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    assert (
        "stop it first" in problem(client.post(url, {"name": "web2"}, format="json"), 409)["detail"]
    )
    problem(
        client.post(
            "/api/v1/tenants/globex/virtualmachines/web1/clone/", {"name": "x"}, format="json"
        ),
        404,
    )
    assert VirtualMachine.objects.count() == 1 and Volume.objects.count() == 1
    assert used_storage(world.acme) == 5


def test_a_running_vm_is_cloned_from_its_snapshot_and_a_bad_snapshot_changes_nothing(world, api):
    vm = stopped_vm_with_disk(world)
    snapshot_services.vm_snapshot_create(actor=world.alice, vm=vm, name="s1")
    snapshot_services.vm_snapshot_create(actor=world.alice, vm=vm, name="s2")
    Snapshot.objects.filter(name="s1").update(phase=SnapshotPhase.READY)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    client = api(world.bob)
    url = f"{VM_BASE}web1/clone/"
    used = used_storage(world.acme)
    problem(client.post(url, {"name": "web2", "snapshot": "nope"}, format="json"), 404)
    busy = problem(client.post(url, {"name": "web2", "snapshot": "s2"}, format="json"), 409)
    assert "not Ready" in busy["detail"]
    assert VirtualMachine.objects.count() == 1 and used_storage(world.acme) == used
    problem(api(world.carol).post(url, {"name": "web2", "snapshot": "s1"}, format="json"), 403)

    response = client.post(url, {"name": "web2", "snapshot": "s1"}, format="json")
    assert response.status_code == 202, response.content
    (copy,) = Volume.objects.filter(vm__name="web2")
    assert (copy.device, copy.source_name, copy.created_from) == ("vdb", "data1@s1", "snapshot")
    assert used_storage(world.acme) == used + 5


def stopped_vm_with_root(world, name="big1") -> VirtualMachine:
    from compute.services import vms as vm_services

    vm = vm_services.vm_create(
        actor=None,
        tenant=world.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=2,
        start=False,
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.STOPPED)
    Volume.objects.filter(vm=vm).update(phase=VolumePhase.ATTACHED)
    return VirtualMachine.objects.get(pk=vm.pk)


def test_a_vm_is_cloned_to_another_size_and_a_smaller_disk_is_a_400(world, api, flavors):
    stopped_vm_with_root(world)
    client = api(world.bob)
    url = f"{VM_BASE}big1/clone/"
    used = used_storage(world.acme)
    smaller = problem(client.post(url, {"name": "big2", "diskGiB": 1}, format="json"), 400)
    assert "Disks only grow" in smaller["errors"]["diskGiB"][0]
    unknown = problem(client.post(url, {"name": "big2", "flavor": "huge"}, format="json"), 400)
    assert "flavor" in unknown["errors"]
    bad = problem(client.post(url, {"name": "big2", "vcpus": 0}, format="json"), 400)
    assert "vcpus" in bad["errors"]
    assert not VirtualMachine.objects.filter(name="big2").exists()
    assert used_storage(world.acme) == used

    response = client.post(
        url, {"name": "big2", "flavor": "small", "memoryMiB": 768, "diskGiB": 6}, format="json"
    )
    assert response.status_code == 202, response.content
    spec = response.json()["spec"]
    assert (spec["vcpus"], spec["memoryMiB"], spec["diskGiB"]) == (1, 768, 6)
    (root,) = Volume.objects.filter(vm__name="big2")
    assert (root.device, root.size_gib, root.source_name) == ("vda", 6, "big1-root")
    assert used_storage(world.acme) == used + 6


def test_a_vm_without_a_root_disk_keeps_its_disk_size_in_a_clone(world, api):
    stopped_vm_with_disk(world)
    response = api(world.bob).post(
        f"{VM_BASE}web1/clone/", {"name": "web2", "diskGiB": 4}, format="json"
    )
    assert "no root disk" in problem(response, 400)["errors"]["diskGiB"][0]
    assert not VirtualMachine.objects.filter(name="web2").exists()
