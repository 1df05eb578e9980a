"""The backup API: shape, the role matrix, other tenants, bad input, Idempotency-Key,
If-Match, and a restore whose files are its task's to check.

No Celery worker here: requests are accepted (202) and stay Pending; tests that need a
Ready backup write its file (a real qcow2 made by ``qemu-img``) and record it as the
export task would."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from compute.choices import BackupPhase, Phase, SnapshotPhase, VolumePhase
from compute.models import Backup, Snapshot, VirtualMachine, Volume
from compute.services import backups as backup_services
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_volumes import problem, used_storage

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

BASE = "/api/v1/tenants/acme/backups/"


@pytest.fixture
def world(demo, make_host, tiny_image, settings, tmp_path):
    settings.ISOTOPE_BACKUP_DIR = str(tmp_path / "backups")
    demo.host = make_host("node-a")
    return demo


def snapshotted(demo, name="web1", tenant=None) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=None,
        tenant=tenant or demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=2,
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.STOPPED)
    Volume.objects.filter(vm=vm).update(phase=VolumePhase.ATTACHED)
    vm = VirtualMachine.objects.get(pk=vm.pk)
    group = snapshot_services.vm_snapshot_create(actor=None, vm=vm, name="s1")
    Snapshot.objects.filter(pk__in=[s.pk for s in group.disks]).update(phase=SnapshotPhase.READY)
    return vm


def make_backup(demo, name="b1", vm=None, tenant=None) -> Backup:
    """A Ready backup whose file exists: what the export task leaves."""
    vm = vm or snapshotted(demo, tenant=tenant)
    backup = backup_services.backup_create(actor=None, vm=vm, snapshot="s1", name=name)
    disks = []
    for disk in backup.disks:
        path = backup_services.disk_path(backup, disk)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{disk['sizeGiB']}G"],
            check=True,
        )
        data = path.read_bytes()
        disks.append({**disk, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    Backup.objects.filter(pk=backup.pk).update(
        phase=BackupPhase.READY, progress=100, disks=disks, size_bytes=1
    )
    backup.snapshots.clear()
    return Backup.objects.select_related("tenant").get(pk=backup.pk)


def test_a_backup_is_accepted_in_the_metadata_spec_status_shape(world, api):
    snapshotted(world)
    response = api(world.bob).post(
        BASE,
        {"metadata": {"name": "b1"}, "spec": {"vm": "web1", "snapshot": "s1"}},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response["Location"].endswith("/api/v1/tenants/acme/backups/b1/")
    data = response.json()
    assert response["ETag"] == f'"{data["metadata"]["resourceVersion"]}"'
    assert data["spec"]["vm"] == "web1" and data["spec"]["snapshot"] == "s1"
    assert data["status"]["phase"] == "Pending" and data["status"]["progress"] == 0
    assert [d["device"] for d in data["status"]["disks"]] == ["vda"]
    listed = api(world.carol).get(BASE).json()["items"]
    assert [b["metadata"]["name"] for b in listed] == ["b1"]
    assert api(world.carol).get(f"{BASE}?phase=Ready").json()["items"] == []
    problem(api(world.carol).get(f"{BASE}?phase=Bogus"), 400)


def test_an_idempotency_key_makes_a_retried_backup_one_backup(world, api):
    snapshotted(world)
    body = {"metadata": {"name": "b1"}, "spec": {"vm": "web1", "snapshot": "s1"}}
    client = api(world.bob)
    first = client.post(BASE, body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = client.post(BASE, body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert Backup.objects.count() == 1


ROLE_STATUS = {
    # who: (list, get, create, restore, restore a disk, delete)
    "alice": (200, 200, 202, 202, 202, 202),
    "bob": (200, 200, 202, 202, 202, 403),
    "carol": (200, 200, 403, 403, 403, 403),
    "dave": (404, 404, 404, 404, 404, 404),
    "outsider": (404, 404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ROLE_STATUS))
def test_the_role_matrix_for_every_backup_endpoint(world, api, who):
    client = api(getattr(world, who))
    vm = snapshotted(world)
    make_backup(world, "old", vm=vm)
    make_backup(world, "gone", vm=vm)
    before = set(Backup.objects.values_list("name", "phase"))
    got = (
        client.get(BASE).status_code,
        client.get(f"{BASE}old/").status_code,
        client.post(
            BASE,
            {"metadata": {"name": "new"}, "spec": {"vm": "web1", "snapshot": "s1"}},
            format="json",
        ).status_code,
        client.post(f"{BASE}old/restore/", {"name": "back1"}, format="json").status_code,
        client.post(
            f"{BASE}old/restore-disk/", {"disk": "vda", "name": "disk1"}, format="json"
        ).status_code,
        client.delete(f"{BASE}gone/").status_code,
    )
    assert got == ROLE_STATUS[who]
    if who in ("carol", "dave", "outsider"):
        assert set(Backup.objects.values_list("name", "phase")) == before
        assert not VirtualMachine.objects.filter(name="back1").exists()
        assert not Volume.objects.filter(name="disk1").exists()
    if who == "bob":
        assert Backup.objects.get(name="gone").phase == BackupPhase.READY
        assert AuditLog.objects.filter(
            actor=world.bob, action="backup.delete", outcome=AuditOutcome.DENIED
        ).exists()
    if who == "alice":
        assert Backup.objects.get(name="gone").phase == BackupPhase.DELETING
        restored = VirtualMachine.objects.get(name="back1")
        assert Volume.objects.get(vm=restored).source_backup.name == "old"
        disk = Volume.objects.get(name="disk1")
        assert (disk.vm, disk.source_backup.name, disk.size_gib) == (None, "old", 2)


def test_another_tenants_backups_are_not_found(world, api):
    make_backup(world, "secret", tenant=world.globex)
    client = api(world.bob)
    url = "/api/v1/tenants/globex/backups/"
    for response in (
        client.get(url),
        client.get(url + "secret/"),
        client.post(url + "secret/restore/", {"name": "mine"}, format="json"),
        client.post(url + "secret/restore-disk/", {"disk": "vda", "name": "mine"}, format="json"),
        client.delete(url + "secret/"),
        client.get(f"{BASE}secret/"),
        client.post(f"{BASE}secret/restore/", {"name": "mine"}, format="json"),
        api(world.alice).delete(f"{BASE}secret/"),
    ):
        problem(response, 404, "not-found")
    assert Backup.objects.get().phase == BackupPhase.READY
    assert not VirtualMachine.objects.filter(name="mine").exists()
    assert not Volume.objects.filter(name="mine").exists()


@pytest.mark.parametrize(
    ("path", "payload", "field", "status"),
    [
        (
            "",
            {"metadata": {"name": "Bad_Name"}, "spec": {"vm": "web1", "snapshot": "s1"}},
            "metadata.name",
            400,
        ),
        ("", {"metadata": {"name": "b2"}, "spec": {"vm": "web1"}}, "snapshot", 400),
        (
            "",
            {"metadata": {"name": "b2"}, "spec": {"vm": "web1", "snapshot": "s1"}, "x": 1},
            "x",
            400,
        ),
        ("", {"metadata": {"name": "b1"}, "spec": {"vm": "web1", "snapshot": "s1"}}, "name", 400),
        ("", {"metadata": {"name": "b2"}, "spec": {"vm": "web1", "snapshot": "nope"}}, "", 404),
        ("", {"metadata": {"name": "b2"}, "spec": {"vm": "nope", "snapshot": "s1"}}, "", 404),
        ("b1/restore/", {}, "name", 400),
        ("b1/restore/", {"name": "web1"}, "name", 400),
        ("b1/restore/", {"name": "-x-"}, "name", 400),
        ("b1/restore-disk/", {"name": "d1"}, "disk", 400),
        ("b1/restore-disk/", {"disk": "vdz", "name": "d1"}, "disk", 400),
        ("b1/restore-disk/", {"disk": "vda", "name": "Bad_Name"}, "name", 400),
        ("b1/restore-disk/", {"disk": "vda", "name": "web1-root"}, "name", 400),
        ("b1/restore-disk/", {"disk": "vda", "name": "d1", "vm": "web1"}, "vm", 400),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(world, api, path, payload, field, status):
    make_backup(world)
    vms, volumes, used = (
        VirtualMachine.objects.count(),
        Volume.objects.count(),
        used_storage(world.acme),
    )
    data = problem(api(world.bob).post(f"{BASE}{path}", payload, format="json"), status)
    if field:
        assert field.split(".")[-1] in json.dumps(data["errors"]), data
    assert Backup.objects.count() == 1
    assert (VirtualMachine.objects.count(), Volume.objects.count()) == (vms, volumes)
    assert used_storage(world.acme) == used


def test_a_restore_request_reads_no_file_its_task_checks_them(world, api):
    # A corrupt file is not the request's business any more: it is accepted (202, the
    # new VM Pending and charged); the provisioning task checks the files and fails the
    # restore (tests/compute/services/test_backups.py).
    backup = make_backup(world)
    path = backup_services.disk_path(backup, backup.disks[0])
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    response = api(world.bob).post(f"{BASE}b1/restore/", {"name": "back1"}, format="json")
    assert response.status_code == 202, response.content
    assert VirtualMachine.objects.get(name="back1").phase == "Pending"


def test_delete_honours_if_match_and_refuses_a_busy_backup(world, api):
    backup = make_backup(world)
    client = api(world.alice)
    problem(client.delete(f"{BASE}b1/", HTTP_IF_MATCH='"999"'), 412)
    Backup.objects.filter(pk=backup.pk).update(phase=BackupPhase.EXPORTING)
    problem(client.delete(f"{BASE}b1/"), 409)
    Backup.objects.filter(pk=backup.pk).update(phase=BackupPhase.READY)
    current = Backup.objects.get(pk=backup.pk).resource_version
    response = client.delete(f"{BASE}b1/", HTTP_IF_MATCH=f'"{current}"')
    assert response.status_code == 202 and response.json()["status"]["phase"] == "Deleting"
    assert AuditLog.objects.filter(action="backup.delete", target="backup/b1").exists()


def test_a_disk_restored_into_a_volume_is_accepted_once_per_idempotency_key(world, api):
    make_backup(world)
    used = used_storage(world.acme)
    client = api(world.bob)
    body = {"disk": "vda", "name": "old-root"}
    first = client.post(f"{BASE}b1/restore-disk/", body, format="json", HTTP_IDEMPOTENCY_KEY="r1")
    again = client.post(f"{BASE}b1/restore-disk/", body, format="json", HTTP_IDEMPOTENCY_KEY="r1")
    assert first.status_code == again.status_code == 202, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert first["Location"].endswith("/api/v1/tenants/acme/volumes/old-root/")
    data = first.json()
    assert data["metadata"]["name"] == "old-root"
    assert data["status"]["phase"] == "Pending"
    assert Volume.objects.filter(name="old-root").count() == 1
    assert used_storage(world.acme) == used + 2
    # The storage quota refuses a disk that does not fit, on the disk field.
    from tenants import services as tenant_services

    tenant_services.quota_set(
        actor=None, tenant=world.acme, limits={"storage": used_storage(world.acme) + 1}
    )
    data = problem(
        client.post(f"{BASE}b1/restore-disk/", {"disk": "vda", "name": "again"}, format="json"),
        403,
    )
    assert data["type"].endswith("quota-exceeded")
    assert "storage" in data["errors"] and "disk" in data["errors"], data
    assert not Volume.objects.filter(name="again").exists()


def test_a_volumes_own_snapshot_is_backed_up_and_its_disk_restored(world, api):
    from tests.compute.test_api_volumes import make_volume

    volume = make_volume(world, "data1", size=3)
    taken = snapshot_services.snapshot_create(actor=None, volume=volume, name="s1")
    Snapshot.objects.filter(pk=taken.pk).update(phase=SnapshotPhase.READY)
    make_volume(world, "theirs", tenant=world.globex)
    client = api(world.bob)

    def body(**spec):
        return {"metadata": {"name": "vb"}, "spec": {"snapshot": "s1", **spec}}

    for spec, field in (({}, "vm"), ({"vm": "web1", "volume": "data1"}, "vm")):
        data = problem(client.post(BASE, body(**spec), format="json"), 400)
        assert field in json.dumps(data["errors"]), data
    problem(client.post(BASE, body(volume="theirs"), format="json"), 404, "not-found")
    problem(client.post(BASE, body(volume="data1", snapshot="nope"), format="json"), 404)
    assert not Backup.objects.exists()

    response = client.post(BASE, body(volume="data1"), format="json")
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["spec"] == {"volume": "data1", "snapshot": "s1"}
    assert data["status"]["disks"][0]["volume"] == "data1"
    # Made Ready as its export leaves it: then only its disk restores.
    backup = Backup.objects.get(name="vb")
    Backup.objects.filter(pk=backup.pk).update(phase=BackupPhase.READY, progress=100)
    assert client.get(f"{BASE}vb/").json()["status"]["actions"] == ["restore-disk"]
    problem(client.post(f"{BASE}vb/restore/", {"name": "vm1"}, format="json"), 409)
    assert not VirtualMachine.objects.filter(name="vm1").exists()
    restored = client.post(
        f"{BASE}vb/restore-disk/", {"disk": "data1", "name": "data1-back"}, format="json"
    )
    assert restored.status_code == 202, restored.content
    assert Volume.objects.get(name="data1-back").source_name == "backup/vb/data1.qcow2"
