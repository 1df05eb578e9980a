"""The Backups page, "Back up" on a VM snapshot, "Restore to new VM", "Restore a disk" and
delete without
JavaScript: roles, other tenants, refusals as messages that change nothing."""

from __future__ import annotations

import pytest

from compute.choices import BackupPhase
from compute.models import Backup, VirtualMachine, Volume
from tests.compute.test_api_backups import make_backup, snapshotted
from tests.compute.test_views_volumes import client_for

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

PAGE = "/t/acme/backups/"


@pytest.fixture
def world(demo, make_host, tiny_image, settings, tmp_path):
    settings.ISOTOPE_BACKUP_DIR = str(tmp_path / "backups")
    demo.host = make_host("node-a")
    return demo


def test_the_page_lists_backups_with_the_buttons_the_role_allows(world):
    make_backup(world)
    for who, restore, delete in (("alice", 1, 1), ("bob", 1, 0), ("carol", 0, 0)):
        html = client_for(getattr(world, who)).get(PAGE).content.decode()
        assert 'data-testid="backup-b1"' in html and "100" in html
        assert ('data-testid="backup-restore"' in html.split("<template")[0]) == bool(restore)
        assert ('data-testid="backup-delete"' in html.split("<template")[0]) == bool(delete)
    assert client_for(world.dave).get(PAGE).status_code == 404


def test_back_up_from_the_vm_page_asks_for_a_name_then_starts_the_export(world):
    snapshotted(world)
    bob = client_for(world.bob)
    vm_page = bob.get("/t/acme/vms/web1/").content.decode()
    assert 'href="/t/acme/vms/web1/snapshots/s1/backup/"' in vm_page
    form = bob.get("/t/acme/vms/web1/snapshots/s1/backup/")
    assert form.status_code == 200 and 'value="web1-s1"' in form.content.decode()
    refused = bob.post("/t/acme/vms/web1/snapshots/s1/backup/", {"name": "Bad_Name"})
    assert refused.status_code == 400 and not Backup.objects.exists()
    done = bob.post("/t/acme/vms/web1/snapshots/s1/backup/", {"name": "nightly"}, follow=True)
    assert done.redirect_chain[-1][0] == PAGE
    assert Backup.objects.get().name == "nightly"
    carol = client_for(world.carol)
    assert 'snapshots/s1/backup/"' not in carol.get("/t/acme/vms/web1/").content.decode()
    assert carol.post("/t/acme/vms/web1/snapshots/s1/backup/", {"name": "x"}).status_code == 403
    dave = client_for(world.dave)
    assert dave.get("/t/acme/vms/web1/snapshots/s1/backup/").status_code == 404


def test_restore_to_a_new_vm_and_refusals_change_nothing(world):
    make_backup(world)
    bob = client_for(world.bob)
    url = f"{PAGE}b1/restore/"
    assert bob.get(url).status_code == 200
    taken = bob.post(url, {"name": "web1"})
    assert taken.status_code == 400 and VirtualMachine.objects.count() == 1
    done = bob.post(url, {"name": "back1"})
    assert done.status_code == 302 and done["Location"] == "/t/acme/vms/back1/"
    assert VirtualMachine.objects.filter(name="back1").exists()
    assert client_for(world.carol).post(url, {"name": "back2"}).status_code == 403
    assert client_for(world.dave).get(url).status_code == 404


def test_back_up_a_volumes_snapshot_from_the_volume_page(world):
    from compute.choices import SnapshotPhase
    from compute.models import Snapshot
    from compute.services import snapshots as snapshot_services
    from tests.compute.test_api_volumes import make_volume

    volume = make_volume(world, "data1", size=3)
    taken = snapshot_services.snapshot_create(actor=None, volume=volume, name="s1")
    Snapshot.objects.filter(pk=taken.pk).update(phase=SnapshotPhase.READY)
    url = "/t/acme/volumes/data1/snapshots/s1/backup/"
    bob = client_for(world.bob)
    shown = f'href="{url}" data-live-action="backup" data-testid="snapshot-backup" >'
    assert shown in bob.get("/t/acme/volumes/data1/").content.decode()
    form = bob.get(url).content.decode()
    assert 'value="data1-s1"' in form and "Export snapshot s1 of volume data1" in form
    assert bob.post(url, {"name": "Bad_Name"}).status_code == 400
    assert not Backup.objects.exists()
    done = bob.post(url, {"name": "data1-nightly"}, follow=True)
    assert done.redirect_chain[-1][0] == PAGE
    assert Backup.objects.get().name == "data1-nightly"
    listing = done.content.decode().split("<template")[0]
    assert "data1</span> @ <span" in listing  # what it came from
    carol = client_for(world.carol)
    assert shown not in carol.get("/t/acme/volumes/data1/").content.decode()
    assert carol.post(url, {"name": "x"}).status_code == 403
    assert client_for(world.dave).get(url).status_code == 404
    assert bob.get("/t/acme/volumes/data1/snapshots/nope/backup/").status_code == 404


def test_restore_a_disk_into_a_new_volume_and_refusals_change_nothing(world):
    make_backup(world)
    bob = client_for(world.bob)
    url = f"{PAGE}b1/restore-disk/"
    listing = bob.get(PAGE).content.decode().split("<template")[0]
    assert f'href="{url}"' in listing
    form = bob.get(url).content.decode()
    # The disk chosen and a name offered; the disk's size and its volume then shown.
    assert 'value="vda"' in form and "checked" in form and 'value="b1-vda"' in form
    assert "web1-root" in form
    volumes = Volume.objects.count()
    for bad in ({"disk": "vdz", "name": "d1"}, {"disk": "vda", "name": "web1-root"}):
        refused = bob.post(url, bad)
        assert refused.status_code == 400 and Volume.objects.count() == volumes
    done = bob.post(url, {"disk": "vda", "name": "old-root"}, follow=True)
    assert done.redirect_chain[-1][0] == "/t/acme/volumes/old-root/"
    page = done.content.decode()
    assert "Restoring disk vda of backup b1 into the new volume old-root" in page
    assert "backup/b1/vda.qcow2" in page  # where it came from
    assert Volume.objects.get(name="old-root").vm is None
    carol = client_for(world.carol)
    assert f'href="{url}"' not in carol.get(PAGE).content.decode()
    assert carol.post(url, {"disk": "vda", "name": "d2"}).status_code == 403
    assert client_for(world.dave).get(url).status_code == 404
    assert not Volume.objects.filter(name="d2").exists()


def test_only_admins_delete_a_backup_after_confirming(world):
    make_backup(world)
    url = f"{PAGE}b1/delete/"
    assert client_for(world.bob).post(url).status_code == 403
    alice = client_for(world.alice)
    assert 'data-testid="backup-delete-form"' in alice.get(url).content.decode()
    assert Backup.objects.get().phase == BackupPhase.READY
    assert alice.post(url).status_code == 302
    assert Backup.objects.get().phase == BackupPhase.DELETING
    assert client_for(world.dave).post(url).status_code == 404
