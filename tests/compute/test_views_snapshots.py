"""The volume page's Snapshots panel and Clone form without JavaScript: confirmation
pages, roles, other tenants, refusals as messages that change nothing."""

from __future__ import annotations

import pytest

from compute.choices import Phase, SnapshotPhase, VolumePhase
from compute.models import Snapshot, VirtualMachine, Volume
from tests.compute.test_api_snapshots import make_snapshot
from tests.compute.test_api_volumes import make_vm, make_volume, used_storage
from tests.compute.test_views_volumes import client_for

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

PAGE = "/t/acme/volumes/data1/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    return demo


def test_the_panel_lists_snapshots_with_the_buttons_the_role_allows(world):
    volume = make_volume(world)
    make_snapshot(world, volume, "nightly")
    for who, restore, delete in (("alice", True, True), ("bob", True, False), ("carol", 0, 0)):
        html = client_for(getattr(world, who)).get(PAGE).content.decode()
        assert 'data-testid="snapshot-nightly"' in html
        restore_link = html.split('data-testid="snapshot-restore"')[1].split(">")[0]
        delete_link = html.split('data-testid="snapshot-delete"')[1].split(">")[0]
        assert ("hidden" not in restore_link) == bool(restore), who
        assert ("hidden" not in delete_link) == bool(delete), who
        assert ('data-testid="snapshot-take-form"' in html) == (who != "carol")


def test_restore_asks_for_the_volume_name_and_a_wrong_one_changes_nothing(world):
    volume = make_volume(world)
    snapshot = make_snapshot(world, volume, "s1")
    client = client_for(world.bob)
    url = f"{PAGE}snapshots/s1/restore/"
    page = client.get(url)
    assert page.status_code == 200 and b"Type <strong" in page.content
    response = client.post(url, {"confirm": "data2"}, follow=True)
    assert b"to confirm" in response.content
    assert Volume.objects.get(pk=volume.pk).phase == VolumePhase.READY
    response = client.post(url, {"confirm": "data1"})
    assert response.status_code == 302 and response["Location"] == f"{PAGE}#snapshots"
    assert Volume.objects.get(pk=volume.pk).phase == VolumePhase.RESTORING
    assert Snapshot.objects.get(pk=snapshot.pk).phase == SnapshotPhase.RESTORING


def test_a_running_vms_disk_is_refused_with_a_message(world):
    vm = make_vm(world, phase=Phase.STOPPED)
    volume = make_volume(world)
    Volume.objects.filter(pk=volume.pk).update(vm=vm, device="vdb", phase=VolumePhase.ATTACHED)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    response = client_for(world.bob).post(f"{PAGE}snapshots/", {"name": "s1"}, follow=True)
    assert b"stop the VM" in response.content
    assert not Snapshot.objects.exists() and used_storage(world.acme) == 5


def test_roles_and_tenants(world):
    volume = make_volume(world)
    make_snapshot(world, volume, "s1")
    theirs = make_volume(world, "secret", tenant=world.globex)
    make_snapshot(world, theirs, "s1")
    bob, carol = client_for(world.bob), client_for(world.carol)
    assert carol.post(f"{PAGE}snapshots/", {"name": "s2"}).status_code == 403
    assert carol.post(f"{PAGE}clone/", {"name": "copy"}).status_code == 403
    assert carol.get(f"{PAGE}snapshots/s1/restore/").status_code == 403
    assert bob.post(f"{PAGE}snapshots/s1/delete/", {"confirm": "yes"}).status_code == 403
    assert bob.get(f"{PAGE}snapshots/nope/restore/").status_code == 404
    for url in ("/t/globex/volumes/secret/snapshots/s1/restore/", "/t/acme/volumes/secret/"):
        assert bob.get(url).status_code == 404
    assert Snapshot.objects.filter(phase=SnapshotPhase.READY).count() == 2
    assert not Volume.objects.filter(name="copy").exists()


def test_delete_asks_first_and_clone_opens_the_new_volume(world):
    volume = make_volume(world)
    make_snapshot(world, volume, "s1")
    alice = client_for(world.alice)
    assert alice.post(f"{PAGE}snapshots/s1/delete/").status_code == 200  # the question
    assert Snapshot.objects.get().phase == SnapshotPhase.READY
    alice.post(f"{PAGE}snapshots/s1/delete/", {"confirm": "yes"})
    assert Snapshot.objects.get().phase == SnapshotPhase.DELETING
    response = alice.post(f"{PAGE}clone/", {"name": "data1-copy"})
    assert response["Location"] == "/t/acme/volumes/data1-copy/"
    assert Volume.objects.get(name="data1-copy").source_name == "data1"
    taken = alice.post(f"{PAGE}clone/", {"name": "data1-copy"}, follow=True)
    assert b"exists already" in taken.content
    assert Volume.objects.count() == 2
