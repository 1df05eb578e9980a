"""The volume pages and the VM page's volumes panel as the server renders them.

No Celery worker: volumes stay where the test puts them; the browser test drives the
same pages against a real worker."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.choices import Phase, VolumePhase
from compute.models import Volume
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from tenants import services as tenant_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_volumes import make_vm, make_volume, used_storage

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

LIST = "/t/acme/volumes/"
NEW = "/t/acme/volumes/new/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    return demo


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_list_shows_phase_size_attachment_and_the_storage_left(world):
    vm = make_vm(world)
    make_volume(world, "a", size=3)
    used = make_volume(world, "b", size=4)
    Volume.objects.filter(pk=used.pk).update(vm=vm, device="vdb", phase=VolumePhase.ATTACHED)
    make_volume(world, "theirs", tenant=world.globex)
    html = client_for(world.carol).get(LIST).content.decode()
    assert 'data-volume="a"' in html and 'data-volume="b"' in html
    assert "theirs" not in html
    assert "193 of 200 GiB of storage left" in html
    assert 'href="/t/acme/vms/web1/">web1</a>' in html
    assert 'data-testid="volume-create"' not in html  # a viewer creates nothing
    assert 'data-action="delete"' not in html


def test_an_empty_list_offers_create_to_operators(world):
    assert 'data-testid="volume-create"' in client_for(world.bob).get(LIST).content.decode()
    assert 'data-testid="volume-create"' not in client_for(world.carol).get(LIST).content.decode()


def test_the_form_shows_the_storage_left_and_creates_a_volume(world):
    bob = client_for(world.bob)
    page = bob.get(NEW).content.decode()
    assert "200 of 200 GiB of storage left" in page
    response = bob.post(
        NEW, {"name": "data1", "size_gib": "7", "storage_class": "local", "format": "qcow2"}
    )
    assert response.status_code == 302 and response["Location"] == f"{LIST}data1/"
    volume = Volume.objects.get(name="data1")
    assert (volume.size_gib, volume.host, volume.phase) == (7, world.host, VolumePhase.PENDING)
    assert used_storage(world.acme) == 7
    page = bob.get(f"{LIST}data1/").content.decode()
    assert "data1 accepted" in page and 'data-testid="volume-spec"' in page


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": ""}, "name"),
        ({"size_gib": "0"}, "size_gib"),
        ({"size_gib": ""}, "size_gib"),
        ({"size_gib": "999999"}, "size_gib"),
        ({"storage_class": "nfs"}, "storage_class"),
        ({"image": "nope"}, "image"),
        ({"vm": "nope"}, "vm"),
    ],
)
def test_bad_input_is_a_field_error_and_creates_nothing(world, data, field):
    form = {"name": "data1", "size_gib": "5", "storage_class": "local", "format": "qcow2", **data}
    response = client_for(world.bob).post(NEW, form)
    assert response.status_code == 400
    assert f'data-testid="error-{field}"' in response.content.decode()
    assert not Volume.objects.exists() and used_storage(world.acme) == 0


def test_a_quota_refusal_lands_on_the_size_field(world):
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"storage": 4})
    response = client_for(world.bob).post(
        NEW, {"name": "big", "size_gib": "5", "storage_class": "local", "format": "qcow2"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-testid="error-size_gib"' in html and "4 GiB left" in html
    assert not Volume.objects.exists()


def test_the_detail_page_offers_attach_to_vms_on_its_host_and_grow(world):
    make_vm(world, "web1")
    make_vm(world, "web2", phase=Phase.STOPPED)
    make_vm(world, "busy", phase=Phase.PROVISIONING)
    make_volume(world)
    html = client_for(world.bob).get(f"{LIST}data1/").content.decode()
    assert 'data-testid="volume-attach-form"' in html
    assert '<option value="web1">' in html and '<option value="web2">' in html
    assert '<option value="busy">' not in html
    assert 'data-testid="volume-resize-form"' in html
    viewer = client_for(world.carol).get(f"{LIST}data1/").content.decode()
    assert 'data-testid="volume-attach-form"' not in viewer
    assert "volume-resize-form" not in viewer


def test_attach_grow_detach_and_delete_from_the_pages(world):
    vm = make_vm(world)
    volume = make_volume(world)
    alice = client_for(world.alice)
    response = alice.post(f"{LIST}data1/attach/", {"vm": "web1"})
    assert response.status_code == 302
    volume.refresh_from_db()
    assert (volume.vm, volume.device) == (vm, "vdb")
    response = alice.post(f"{LIST}data1/resize/", {"size_gib": "9"})
    assert response.status_code == 302
    assert Volume.objects.get(pk=volume.pk).size_gib == 9 and used_storage(world.acme) == 9
    # Shrinking: a message, nothing changes.
    response = alice.post(f"{LIST}data1/resize/", {"size_gib": "2"}, follow=True)
    assert "Volumes only grow" in response.content.decode()
    assert Volume.objects.get(pk=volume.pk).size_gib == 9
    # Detach and delete are confirmed first.
    for action in ("detach", "delete"):
        page = alice.post(f"{LIST}data1/{action}/")
        assert 'data-testid="volume-confirm-page"' in page.content.decode()
    assert Volume.objects.get(pk=volume.pk).vm == vm
    alice.post(f"{LIST}data1/detach/", {"confirm": "yes"})
    assert Volume.objects.get(pk=volume.pk).vm is None
    response = alice.post(f"{LIST}data1/delete/", {"confirm": "yes"})
    assert response["Location"] == LIST
    assert Volume.objects.get(pk=volume.pk).phase == VolumePhase.DELETING


def test_the_vm_page_lists_its_volumes_and_attaches_one(world):
    vm = make_vm(world)
    make_volume(world, "spare")
    elsewhere = make_volume(world, "far")
    Volume.objects.filter(pk=elsewhere.pk).update(host=None)
    bob = client_for(world.bob)
    html = bob.get("/t/acme/vms/web1/").content.decode()
    assert 'data-testid="vm-volumes"' in html
    assert '<option value="spare">' in html and '<option value="far">' not in html
    response = bob.post("/t/acme/vms/web1/volumes/", {"volume": "spare", "device": "vdc"})
    assert response.status_code == 302 and response["Location"].endswith(
        "/t/acme/vms/web1/#volumes"
    )
    spare = Volume.objects.get(name="spare")
    assert (spare.vm, spare.device) == (vm, "vdc")
    html = bob.get("/t/acme/vms/web1/").content.decode()
    assert 'data-testid="vm-volume-spare"' in html and ">vdc<" in html
    # Another tenant's volume is not found; a viewer cannot attach.
    make_volume(world, "theirs", tenant=world.globex)
    response = bob.post("/t/acme/vms/web1/volumes/", {"volume": "theirs"}, follow=True)
    assert "No volume named" in response.content.decode()
    assert Volume.objects.get(name="theirs").vm is None
    assert (
        client_for(world.carol).post("/t/acme/vms/web1/volumes/", {"volume": "x"}).status_code
        == 403
    )


def test_a_viewer_cannot_act_and_the_refusal_is_audited(world):
    make_volume(world)
    carol = client_for(world.carol)
    assert carol.post(f"{LIST}data1/resize/", {"size_gib": "9"}).status_code == 403
    assert carol.post(f"{LIST}data1/delete/", {"confirm": "yes"}).status_code == 403
    assert Volume.objects.get(name="data1").size_gib == 5
    assert AuditLog.objects.filter(actor=world.carol, outcome=AuditOutcome.DENIED).count() == 2


def test_next_never_leaves_the_site(world):
    make_vm(world)
    make_volume(world)
    response = client_for(world.bob).post(
        f"{LIST}data1/attach/", {"vm": "web1", "next": "https://evil.example/"}
    )
    assert response["Location"] == f"{LIST}data1/"


# --- Role matrix over every volume page -------------------------------------------------
# who → status for: list, detail, form, create POST, attach POST, resize POST, delete confirm
WEB_MATRIX = {
    "anonymous": (302, 302, 302, 302, 302, 302, 302),
    "outsider": (404, 404, 404, 404, 404, 404, 404),
    "dave": (404, 404, 404, 404, 404, 404, 404),
    "carol": (200, 200, 403, 403, 403, 403, 403),
    "bob": (200, 200, 200, 302, 302, 302, 403),
    "alice": (200, 200, 200, 302, 302, 302, 200),
    "admin": (200, 200, 200, 302, 302, 302, 200),
}


@pytest.mark.parametrize("who", list(WEB_MATRIX))
def test_the_role_matrix_for_every_volume_page(world, who):
    make_vm(world)
    make_volume(world, "a")
    make_volume(world, "b")
    client = Client() if who == "anonymous" else client_for(getattr(world, who))
    got = (
        client.get(LIST).status_code,
        client.get(f"{LIST}a/").status_code,
        client.get(NEW).status_code,
        client.post(
            NEW, {"name": "new1", "size_gib": "1", "storage_class": "local", "format": "qcow2"}
        ).status_code,
        client.post(f"{LIST}a/attach/", {"vm": "web1"}).status_code,
        client.post(f"{LIST}b/resize/", {"size_gib": "8"}).status_code,
        client.get(f"{LIST}b/delete/").status_code,
    )
    assert got == WEB_MATRIX[who]
    allowed = WEB_MATRIX[who][3] == 302 and who != "anonymous"
    assert Volume.objects.filter(name="new1").exists() == allowed
    assert (Volume.objects.get(name="a").vm_id is not None) == allowed
    assert (Volume.objects.get(name="b").size_gib == 8) == allowed


# --- The workload form mounts Kubernetes volumes ------------------------------------------
def workload_form(**overrides) -> dict:
    data = {
        "name": "db",
        "kind": "Deployment",
        "image": "postgres:16",
        "replicas": "1",
        "cpu_request": "250m",
        "memory_request": "128Mi",
        "service_type": "",
    }
    return {**data, **overrides}


def test_the_workload_form_lists_the_claims_and_mounts_one(world, fake_cluster):
    from compute.models import Workload

    volume_services.volume_create(
        actor=None, tenant=world.acme, name="pgdata", size_gib=2, storage_class="cluster"
    )
    bob = client_for(world.bob)
    page = bob.get("/t/acme/workloads/new/").content.decode()
    assert '<span class="font-monospace">pgdata</span> (2 GiB' in page
    response = bob.post(
        "/t/acme/workloads/new/", workload_form(volumes="pgdata:/var/lib/postgresql:ro")
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert Workload.objects.get(name="db").volumes == [
        {"volume": "pgdata", "mountPath": "/var/lib/postgresql", "readOnly": True}
    ]
    detail = bob.get("/t/acme/workloads/db/").content.decode()
    assert 'data-testid="workload-volumes"' in detail and "/var/lib/postgresql" in detail


@pytest.mark.parametrize("text", ["pgdata", "pgdata:/a:rw", "nope:/a", "pgdata:rel"])
def test_a_bad_mount_line_is_a_field_error(world, fake_cluster, text):
    from compute.models import Workload

    volume_services.volume_create(
        actor=None, tenant=world.acme, name="pgdata", size_gib=2, storage_class="cluster"
    )
    response = client_for(world.bob).post("/t/acme/workloads/new/", workload_form(volumes=text))
    assert response.status_code == 400
    assert 'data-testid="error-volumes"' in response.content.decode()
    assert not Workload.objects.exists()


def test_the_vm_form_boots_from_a_ready_volume(world):
    from compute.models import Image

    make_volume(world, "system", size=6)
    make_volume(world, "busy", phase=VolumePhase.PENDING)
    bob = client_for(world.bob)
    page = bob.get("/t/acme/vms/new/").content.decode()
    assert '<option value="system"' in page and '<option value="busy"' not in page
    response = bob.post(
        "/t/acme/vms/new/",
        {
            "name": "fromvol",
            "image": str(Image.objects.get(name="tiny").pk),
            "size": "custom",
            "vcpus": "1",
            "memory_mib": "256",
            "disk_gib": "0",
            "root_volume": "system",
            "restart_policy": "OnFailure",
        },
    )
    assert response.status_code == 302, response.content.decode()[-1500:]
    volume = Volume.objects.get(name="system")
    assert volume.vm.name == "fromvol" and volume.device == "vda"
    html = bob.get("/t/acme/vms/fromvol/").content.decode()
    assert 'data-testid="vm-volume-system"' in html


def test_the_migration_panel_says_local_volumes_are_copied_and_shared_disks_not(world):
    vm = vm_services.vm_create(
        actor=None,
        tenant=world.acme,
        name="disky",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=2,
    )
    bob = client_for(world.alice)
    html = bob.get("/t/acme/vms/disky/").content.decode()
    assert "2 GiB of local volumes, copied with the guest" in html
    Volume.objects.filter(vm=vm).update(pool="isotope")  # a root disk from before volumes
    html = bob.get("/t/acme/vms/disky/").content.decode()
    assert "2 GiB on shared storage — not copied" in html
