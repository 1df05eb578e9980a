"""Backups in the browser against a real Celery worker and libvirt's test driver: bob
backs up a VM snapshot from the VM page, the export reaches Ready (100 %) live on the
Backups page that alice has open, bob restores it into a new VM and one disk of it into a
new volume, alice deletes it; bob backs up a lone volume's snapshot and brings its disk
back; a viewer sees backups without buttons."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.choices import Phase, SnapshotPhase
from compute.models import Backup, Snapshot, VirtualMachine
from compute.services import snapshots as snapshot_services
from tests.conftest import ARTIFACTS, login, wait_for
from tests.e2e.test_snapshots import vm_with_disk

pytestmark = pytest.mark.e2e

PHASE_TIMEOUT = 30_000


@pytest.fixture
def snapshotted(demo, make_host, tiny_image, settings, tmp_path):
    settings.ISOTOPE_BACKUP_DIR = str(tmp_path / "backups")
    make_host("node-a")
    vm = vm_with_disk(demo, Phase.STOPPED)
    group = snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="before")
    wait_for(
        lambda: all(
            Snapshot.objects.get(pk=s.pk).phase == SnapshotPhase.READY for s in group.disks
        ),
        20,
        message="snapshot not Ready",
    )
    return vm


def test_bob_backs_up_a_snapshot_sees_it_ready_live_and_restores_it_to_a_new_vm(
    demo, celery_worker, snapshotted, live_url, new_page, axe
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # alice watches the Backups page: the new backup appears and finishes there live.
    watcher = new_page()
    login(watcher, live_url, "alice")
    watcher.goto(f"{live_url}/t/acme/backups/")
    expect(watcher.get_by_test_id("backup-table")).to_be_visible()
    expect(watcher.locator("[data-backups-empty]")).to_contain_text("No backups yet")
    axe(watcher)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    row = page.get_by_test_id("vm-snapshot-before")
    expect(row.get_by_test_id("phase")).to_have_text("Ready")
    row.get_by_test_id("snapshot-backup").click()
    form = page.get_by_test_id("backup-form")
    expect(form).to_contain_text("Export snapshot before of web-1")
    axe(page)
    form.get_by_label("Backup name").fill("Bad_Name")
    form.get_by_label("Backup name").evaluate("el => el.removeAttribute('pattern')")
    form.get_by_test_id("backup-submit").click()
    expect(page.get_by_test_id("messages")).to_contain_text("DNS label")
    assert not Backup.objects.exists()
    page.get_by_label("Backup name").fill("web-1-nightly")
    page.get_by_test_id("backup-submit").click()
    page.wait_for_url(f"{live_url}/t/acme/backups/")
    expect(page.get_by_test_id("messages")).to_contain_text(
        "Backing up snapshot before of web-1 as web-1-nightly"
    )

    live_row = watcher.get_by_test_id("backup-web-1-nightly")
    expect(live_row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(live_row.get_by_test_id("backup-progress")).to_have_attribute("aria-valuenow", "100")
    expect(live_row.get_by_test_id("backup-restore")).to_be_visible()
    expect(live_row.get_by_test_id("backup-delete")).to_be_visible()  # alice is an admin
    expect(watcher.locator("[data-backups-empty]")).to_be_hidden()
    watcher.screenshot(path=str(ARTIFACTS / "backups-live-alice.png"), full_page=True)

    mine = page.get_by_test_id("backup-web-1-nightly")
    expect(mine.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(mine.get_by_test_id("backup-delete")).to_have_count(0)  # bob is an operator
    axe(page)
    mine.get_by_test_id("backup-restore").click()
    restore = page.get_by_test_id("backup-restore-form")
    expect(restore).to_contain_text("web-1 @ before")
    axe(page)
    restore.get_by_label("New VM name").fill("web-1")  # taken
    restore.get_by_test_id("restore-submit").click()
    expect(page.get_by_test_id("messages")).to_contain_text("exists")
    page.get_by_label("New VM name").fill("web-1-back")
    page.get_by_test_id("restore-submit").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/web-1-back/")
    expect(page.get_by_test_id("messages")).to_contain_text(
        "Restoring backup web-1-nightly into the new VM web-1-back"
    )
    detail = page.get_by_test_id("vm-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("Running", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("vm-volume-web-1-back-root")).to_contain_text("Attached")
    page.screenshot(path=str(ARTIFACTS / "backup-restored-bob.png"), full_page=True)

    # One disk of it back as a volume of its own, to attach wherever it is needed.
    expect(live_row.get_by_test_id("backup-restore-disk")).to_be_visible()
    page.goto(f"{live_url}/t/acme/backups/")
    page.get_by_test_id("backup-web-1-nightly").get_by_test_id("backup-restore-disk").click()
    form = page.get_by_test_id("backup-restore-disk-form")
    expect(form.get_by_label("vda")).to_be_checked()
    expect(form.get_by_label("New volume name")).to_have_value("web-1-nightly-vda")
    axe(page)
    page.screenshot(path=str(ARTIFACTS / "backup-restore-disk-form.png"), full_page=True)
    form.get_by_label("New volume name").fill("web-1-old")
    form.get_by_test_id("restore-disk-submit").click()
    page.wait_for_url(f"{live_url}/t/acme/volumes/web-1-old/")
    expect(page.get_by_test_id("messages")).to_contain_text(
        "Restoring disk vda of backup web-1-nightly into the new volume web-1-old"
    )
    volume = page.get_by_test_id("volume-detail")
    expect(volume.get_by_test_id("phase").first).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(volume.get_by_test_id("volume-spec")).to_contain_text("backup/web-1-nightly/vda.qcow2")
    axe(page)
    page.screenshot(path=str(ARTIFACTS / "backup-disk-restored-bob.png"), full_page=True)

    # alice deletes the backup (asked first); both tabs lose the row.
    live_row.get_by_test_id("backup-delete").click()
    expect(watcher.get_by_test_id("backup-delete-form")).to_contain_text(
        "Delete backup web-1-nightly?"
    )
    watcher.get_by_test_id("backup-delete-confirm").click()
    expect(watcher.get_by_test_id("messages")).to_contain_text("Deleting backup web-1-nightly")
    expect(watcher.get_by_test_id("backup-web-1-nightly")).to_have_count(0, timeout=PHASE_TIMEOUT)
    assert VirtualMachine.objects.filter(name="web-1-back").exists()


def test_a_viewer_sees_backups_without_buttons(
    demo, celery_worker, snapshotted, live_url, new_page
):
    from compute.services import backups as backup_services

    backup_services.backup_create(actor=demo.bob, vm=snapshotted, snapshot="before", name="b1")
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/backups/")
    row = page.get_by_test_id("backup-b1")
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(row.get_by_test_id("backup-restore")).to_have_count(0)
    expect(row.get_by_test_id("backup-delete")).to_have_count(0)
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    expect(page.get_by_test_id("snapshot-backup")).to_have_count(0)
    assert page.goto(f"{live_url}/t/acme/backups/b1/restore/").status == 403
    assert page.goto(f"{live_url}/t/acme/backups/b1/restore-disk/").status == 403


def test_bob_backs_up_a_lone_volumes_snapshot_and_restores_its_disk(
    demo, make_host, celery_worker, settings, tmp_path, live_url, new_page, axe
):
    from compute.choices import VolumePhase
    from compute.models import Volume
    from compute.services import volumes as volume_services

    settings.ISOTOPE_BACKUP_DIR = str(tmp_path / "backups")
    make_host("node-a")
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data1", size_gib=2
    )
    wait_for(lambda: Volume.objects.get(pk=volume.pk).phase == VolumePhase.READY, 20)
    taken = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="s1")
    wait_for(lambda: Snapshot.objects.get(pk=taken.pk).phase == SnapshotPhase.READY, 20)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/volumes/data1/")
    page.get_by_test_id("snapshot-s1").get_by_test_id("snapshot-backup").click()
    form = page.get_by_test_id("backup-form")
    expect(form).to_contain_text("Export snapshot s1 of volume data1")
    axe(page)
    form.get_by_label("Backup name").fill("data1-weekly")
    form.get_by_test_id("backup-submit").click()
    page.wait_for_url(f"{live_url}/t/acme/backups/")
    row = page.get_by_test_id("backup-data1-weekly")
    expect(row).to_contain_text("data1 @ s1")
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    # A volume's backup restores only into a volume: no "Restore to new VM".
    expect(row.get_by_test_id("backup-restore")).to_be_hidden()
    expect(row.get_by_test_id("backup-restore-disk")).to_be_visible()
    axe(page)
    row.get_by_test_id("backup-restore-disk").click()
    form = page.get_by_test_id("backup-restore-disk-form")
    expect(form.get_by_label("data1")).to_be_checked()
    form.get_by_label("New volume name").fill("data1-back")
    form.get_by_test_id("restore-disk-submit").click()
    page.wait_for_url(f"{live_url}/t/acme/volumes/data1-back/")
    detail = page.get_by_test_id("volume-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(detail.get_by_test_id("volume-spec")).to_contain_text("backup/data1-weekly/data1.qcow2")
    assert Backup.objects.get(name="data1-weekly").vm is None
