"""The Snapshots panels (volume page, VM page) and Clone form without JavaScript:
confirmation pages, roles, other tenants, refusals as messages that change nothing."""

from __future__ import annotations

import pytest

from compute.choices import Phase, SnapshotPhase, VolumePhase
from compute.models import Snapshot, SnapshotSchedule, VirtualMachine, Volume
from compute.services import snapshots as snapshot_services
from tests.compute.test_api_snapshots import (
    make_snapshot,
    stopped_vm_with_disk,
    stopped_vm_with_root,
)
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
    # The Clone card offers the Ready snapshots: a copy of what the volume held then.
    make_snapshot(world, volume, "s2")
    page = alice.get(PAGE).content.decode()
    assert '<option value="s2">snapshot s2' in page and '<option value="s1">' not in page
    done = alice.post(f"{PAGE}clone/", {"name": "data1-then", "snapshot": "s2"}, follow=True)
    assert done.redirect_chain[-1][0] == "/t/acme/volumes/data1-then/"
    assert b"Cloning data1@s2 into data1-then" in done.content
    assert Volume.objects.get(name="data1-then").source_name == "data1@s2"


# --- The VM page's Snapshots panel --------------------------------------------------------
VM_PAGE = "/t/acme/vms/web1/"


def test_the_vm_panel_lists_vm_and_disk_snapshots_with_the_buttons_the_role_allows(world):
    vm = stopped_vm_with_disk(world)
    snapshot_services.vm_snapshot_create(actor=world.bob, vm=vm, name="nightly")
    make_snapshot(world, Volume.objects.get(name="data1"), "by-hand")
    Snapshot.objects.update(phase=SnapshotPhase.READY)
    for who, restore, delete in (("alice", True, True), ("bob", True, False), ("carol", 0, 0)):
        html = client_for(getattr(world, who)).get(VM_PAGE).content.decode()
        row = html.split('data-testid="vm-snapshot-nightly"')[1].split("</tr>")[0]
        assert "data1" in row and "Ready" in row and "5</span> GiB" in row
        assert ('data-snapshot-action="restore"' in row) and (
            "hidden" not in row.split('data-snapshot-action="restore"')[1].split(">")[0]
        ) == bool(restore), who
        delete_link = row.split('data-snapshot-action="delete"')[1].split(">")[0]
        assert ("hidden" not in delete_link) == bool(delete), who
        assert 'data-testid="vm-disk-snapshot-data1-by-hand"' in html
        assert ('data-testid="vm-snapshot-take-form"' in html) == (who != "carol")
        note = html.split('data-testid="vm-snapshot-stopped"')[1].split(">")[0]
        assert "hidden" in note  # stopped: no warning


def test_a_running_vm_is_snapshotted_live_and_an_unsettled_one_is_refused(world):
    from compute.models import Host

    vm = stopped_vm_with_disk(world)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    client = client_for(world.bob)
    html = client.get(VM_PAGE).content.decode()
    note = html.split('data-testid="vm-snapshot-stopped"')[1].split("</div>")[0]
    assert "hidden" not in note.split(">")[0]
    assert "copies its disks as they are at that moment while it runs on" in note
    assert "stop it to restore one" in note
    assert not html.split('id="vm-snapshot-name"')[1].split(">")[0].rstrip().endswith("disabled")
    # This host cannot save memory: no "With memory" box.
    assert 'id="vm-snapshot-memory"' not in html
    response = client.post(f"{VM_PAGE}snapshots/", {"name": "s1"}, follow=True)
    assert b"Taking snapshot s1" in response.content
    assert Snapshot.objects.get().live and used_storage(world.acme) == 10

    # A host that can: the box is there and the memory is charged with the first disk.
    Host.objects.update(capabilities={**vm.host.capabilities, "memory_state": True})
    html = client.get(VM_PAGE).content.decode()
    box = html.split('id="vm-snapshot-memory"')[1].split(">")[0]
    assert "disabled" not in box
    client.post(f"{VM_PAGE}snapshots/", {"name": "s2", "memory": "1"})
    taken = Snapshot.objects.get(name="s2")
    assert taken.memory_name and taken.memory_gib == 1 and used_storage(world.acme) == 16

    # Mid-migration nothing can be taken: the form is off and a post is refused.
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.MIGRATING)
    html = client.get(VM_PAGE).content.decode()
    assert html.split('id="vm-snapshot-name"')[1].split(">")[0].rstrip().endswith("disabled")
    response = client.post(f"{VM_PAGE}snapshots/", {"name": "s3"}, follow=True)
    assert b"Running, Paused or Stopped" in response.content
    assert Snapshot.objects.count() == 2 and used_storage(world.acme) == 16


def test_take_restore_and_delete_a_vm_snapshot_from_its_page(world):
    vm = stopped_vm_with_disk(world)
    bob, alice = client_for(world.bob), client_for(world.alice)
    response = bob.post(f"{VM_PAGE}snapshots/", {"name": "s1"})
    assert response["Location"] == f"{VM_PAGE}#snapshots"
    assert Snapshot.objects.get().vm == vm and used_storage(world.acme) == 10
    Snapshot.objects.update(phase=SnapshotPhase.READY)
    url = f"{VM_PAGE}snapshots/s1/restore/"
    page = bob.get(url)
    assert page.status_code == 200 and b"Type <strong" in page.content
    assert b"every disk of web1" in page.content
    wrong = bob.post(url, {"confirm": "data1"}, follow=True)
    assert b"Type the VM&#x27;s name" in wrong.content
    assert Volume.objects.get().phase == VolumePhase.ATTACHED
    done = bob.post(url, {"confirm": "web1"})
    assert done["Location"] == f"{VM_PAGE}#snapshots"
    assert Volume.objects.get().phase == VolumePhase.RESTORING
    assert Snapshot.objects.get().phase == SnapshotPhase.RESTORING
    Snapshot.objects.update(phase=SnapshotPhase.READY)
    assert bob.post(f"{VM_PAGE}snapshots/s1/delete/", {"confirm": "yes"}).status_code == 403
    assert alice.post(f"{VM_PAGE}snapshots/s1/delete/").status_code == 200  # the question
    assert Snapshot.objects.get().phase == SnapshotPhase.READY
    alice.post(f"{VM_PAGE}snapshots/s1/delete/", {"confirm": "yes"})
    assert Snapshot.objects.get().phase == SnapshotPhase.DELETING


def test_vm_snapshot_pages_for_other_roles_and_tenants(world):
    vm = stopped_vm_with_disk(world)
    snapshot_services.vm_snapshot_create(actor=world.bob, vm=vm, name="s1")
    make_vm(world, "theirs", tenant=world.globex)
    carol, dave = client_for(world.carol), client_for(world.dave)
    assert carol.post(f"{VM_PAGE}snapshots/", {"name": "s2"}).status_code == 403
    assert carol.get(f"{VM_PAGE}snapshots/s1/restore/").status_code == 403
    assert carol.get(f"{VM_PAGE}snapshots/nope/restore/").status_code == 404
    assert dave.get(f"{VM_PAGE}snapshots/s1/restore/").status_code == 404
    assert dave.post(f"{VM_PAGE}snapshots/", {"name": "s2"}).status_code == 404
    bob = client_for(world.bob)
    assert bob.post("/t/globex/vms/theirs/snapshots/", {"name": "x"}).status_code == 404
    assert list(Snapshot.objects.values_list("name", flat=True)) == ["s1"]


# --- Snapshot schedule forms -------------------------------------------------------------
def test_an_operator_sets_changes_and_removes_a_volume_schedule_from_its_page(world):
    make_volume(world)
    bob = client_for(world.bob)
    url = f"{PAGE}snapshot-schedule/"
    html = bob.get(PAGE).content.decode()
    assert "No schedule: snapshots are taken by hand only." in html
    response = bob.post(
        url,
        {
            "mode": "interval",
            "interval_hours": "6",
            "keep": "4",
            "enabled": "1",
            "daily_at": "02:00",
        },
        follow=True,
    )
    assert b"Snapshot schedule of data1 saved." in response.content
    assert b"Every 6 h</strong>, keeping the newest 4" in response.content
    schedule = SnapshotSchedule.objects.get()
    assert (schedule.interval_hours, schedule.daily_at, schedule.keep) == (6, None, 4)
    bob.post(url, {"mode": "daily", "interval_hours": "6", "daily_at": "03:15", "keep": "2"})
    schedule.refresh_from_db()
    assert (schedule.interval_hours, str(schedule.daily_at), schedule.enabled) == (
        None,
        "03:15:00",
        False,
    )
    refused = bob.post(url, {"mode": "interval", "interval_hours": "6", "keep": "0"}, follow=True)
    assert b"Keep 1 to 50 snapshots." in refused.content
    assert SnapshotSchedule.objects.get().keep == 2
    removed = bob.post(url, {"remove": "1"}, follow=True)
    assert b"removed; its snapshots are kept" in removed.content
    assert not SnapshotSchedule.objects.exists()


def test_the_vm_page_sets_a_vm_schedule_and_viewers_only_read_it(world):
    stopped_vm_with_disk(world)
    bob, carol = client_for(world.bob), client_for(world.carol)
    bob.post(
        f"{VM_PAGE}snapshot-schedule/",
        {"mode": "daily", "daily_at": "01:30", "keep": "7", "enabled": "1"},
    )
    schedule = SnapshotSchedule.objects.get()
    assert schedule.vm.name == "web1" and schedule.volume is None
    html = carol.get(VM_PAGE).content.decode()
    assert "Daily at 01:30 UTC</strong>, keeping the newest 7" in html
    assert 'data-testid="snapshot-schedule-form"' not in html
    assert carol.post(f"{VM_PAGE}snapshot-schedule/", {"remove": "1"}).status_code == 403
    other = client_for(world.dave)
    assert other.post(f"{VM_PAGE}snapshot-schedule/", {"remove": "1"}).status_code == 404
    assert SnapshotSchedule.objects.count() == 1


def test_the_clone_form_opens_the_new_vm_and_refusals_are_messages(world):
    vm = stopped_vm_with_disk(world)
    bob, carol = client_for(world.bob), client_for(world.carol)
    assert 'data-testid="vm-clone-form"' not in carol.get(VM_PAGE).content.decode()
    assert carol.post(f"{VM_PAGE}clone/", {"name": "web2"}).status_code == 403
    html = bob.get(VM_PAGE).content.decode()
    assert 'value="web1-copy"' in html and "5 GiB of storage" in html
    response = bob.post(f"{VM_PAGE}clone/", {"name": "web2", "start": "1"})
    assert response["Location"] == "/t/acme/vms/web2/"
    clone = VirtualMachine.objects.get(name="web2")
    assert clone.desired_state == "running" and clone.volumes.get().source_name == "data1"
    taken = bob.post(f"{VM_PAGE}clone/", {"name": "web2"}, follow=True)
    assert b"exists already" in taken.content
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    running = bob.post(f"{VM_PAGE}clone/", {"name": "web3"}, follow=True)
    assert b"stop it first" in running.content
    html = running.content.decode()
    assert html.split('id="vm-clone-name"')[1].split(">")[0].rstrip().endswith("disabled")
    assert VirtualMachine.objects.count() == 2


def test_the_clone_card_clones_a_running_vm_from_a_ready_snapshot(world):
    vm = stopped_vm_with_disk(world)
    snapshot_services.vm_snapshot_create(actor=world.alice, vm=vm, name="s1")
    bob = client_for(world.bob)
    assert 'data-testid="vm-clone-snapshot-form"' not in bob.get(VM_PAGE).content.decode()
    Snapshot.objects.update(phase=SnapshotPhase.READY)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    html = bob.get(VM_PAGE).content.decode()
    form = html.split('data-testid="vm-clone-snapshot-form"')[1].split("</form>")[0]
    assert '<option value="s1">' in form and "disabled" not in form
    response = bob.post(f"{VM_PAGE}clone/", {"name": "web2", "snapshot": "s1"})
    assert response["Location"] == "/t/acme/vms/web2/"
    assert Volume.objects.get(vm__name="web2").source_name == "data1@s1"
    missing = bob.post(f"{VM_PAGE}clone/", {"name": "web3", "snapshot": "nope"}, follow=True)
    assert b"not found" in missing.content
    assert not VirtualMachine.objects.filter(name="web3").exists()


def test_the_clone_form_takes_another_size_and_refuses_a_smaller_disk(world, flavors):
    stopped_vm_with_root(world, name="web1")
    bob = client_for(world.bob)
    html = bob.get(VM_PAGE).content.decode()
    form = html.split('data-testid="vm-clone-form"')[1].split("</form>")[0]
    assert '<option value="medium">' in form and 'min="2"' in form
    smaller = bob.post(f"{VM_PAGE}clone/", {"name": "web2", "disk_gib": "1"}, follow=True)
    assert b"Disks only grow" in smaller.content
    assert not VirtualMachine.objects.filter(name="web2").exists()
    response = bob.post(
        f"{VM_PAGE}clone/", {"name": "web2", "flavor": "medium", "vcpus": "", "disk_gib": "12"}
    )
    assert response["Location"] == "/t/acme/vms/web2/"
    clone = VirtualMachine.objects.get(name="web2")
    assert (clone.vcpus, clone.memory_mib, clone.disk_gib) == (2, 1024, 12)
    assert clone.volumes.get().size_gib == 12
