"""Snapshots in the browser against a real Celery worker and libvirt's test driver:
take one of a volume and of a whole (stopped) VM, see it become Ready live, restore it
(typing the volume's or VM's name), delete it, schedule them, clone the volume and the
whole VM."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.choices import Phase, VolumePhase
from compute.models import Snapshot, SnapshotSchedule
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.tasks.snapshots import snapshot_schedules_run
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.services.test_volumes import wait_volume
from tests.conftest import ARTIFACTS, login, wait_for

pytestmark = pytest.mark.e2e

PHASE_TIMEOUT = 20_000


def test_bob_takes_and_restores_a_snapshot_and_alice_deletes_it(
    demo, make_host, celery_worker, live_url, new_page
):
    make_host("node-a")
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data-1", size_gib=2
    )
    wait_volume(volume, VolumePhase.READY)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/volumes/data-1/")
    panel = page.get_by_test_id("volume-snapshots")
    expect(panel).to_contain_text("No snapshots of this volume yet.")
    panel.get_by_label("Snapshot name").fill("before-upgrade")
    panel.get_by_role("button", name="Take snapshot").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Taking snapshot before-upgrade")
    row = page.get_by_test_id("snapshot-before-upgrade")
    # Pending → Ready arrives live, and with it the Restore button (bob is an operator).
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(row.get_by_test_id("snapshot-restore")).to_be_visible()
    expect(row.get_by_test_id("snapshot-delete")).to_be_hidden()  # admins delete
    expect(row).to_contain_text("2 GiB")
    page.screenshot(path=str(ARTIFACTS / "volume-snapshots-bob.png"), full_page=True)

    row.get_by_test_id("snapshot-restore").click()
    confirm = page.get_by_test_id("snapshot-confirm-page")
    expect(confirm).to_contain_text("Everything written to data-1 since the snapshot")
    confirm.get_by_test_id("snapshot-confirm-name").fill("data-2")  # a typo refuses
    confirm.get_by_test_id("snapshot-confirm").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Type the volume's name")
    page.screenshot(path=str(ARTIFACTS / "snapshot-restore-confirm.png"), full_page=True)
    page.get_by_test_id("snapshot-confirm-name").fill("data-1")
    page.get_by_test_id("snapshot-confirm").click()
    page.wait_for_url(f"{live_url}/t/acme/volumes/data-1/#snapshots")
    expect(page.get_by_test_id("messages")).to_contain_text("Restoring data-1 from snapshot")
    # The copy back takes about a second here: it may finish before this page's live
    # stream is up, so the check is on what the page shows once it is done.
    wait_for(
        lambda: Snapshot.objects.get(name="before-upgrade").restored is not None,
        20,
        message="not restored",
    )
    page.reload()
    expect(page.get_by_test_id("volume-events")).to_contain_text(
        "Restored from snapshot before-upgrade"
    )
    expect(page.get_by_test_id("volume-detail").get_by_test_id("phase").first).to_have_text("Ready")
    expect(row.get_by_test_id("phase")).to_have_text("Ready")
    expect(row).not_to_contain_text("never")

    # A copy of the snapshot as a new volume: what data-1 held then.
    clone = page.get_by_test_id("volume-clone-form")
    clone.get_by_label("New volume name").fill("data-1-then")
    clone.get_by_label("Copy of").select_option("before-upgrade")
    clone.get_by_role("button", name="Clone").click()
    page.wait_for_url(f"{live_url}/t/acme/volumes/data-1-then/")
    expect(page.get_by_test_id("messages")).to_contain_text(
        "Cloning data-1@before-upgrade into data-1-then"
    )
    then = page.get_by_test_id("volume-detail")
    expect(then.get_by_test_id("phase").first).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(then.get_by_test_id("volume-spec")).to_contain_text("data-1@before-upgrade")
    page.goto(f"{live_url}/t/acme/volumes/data-1/")
    expect(row.get_by_test_id("phase")).to_have_text("Ready")

    admin = new_page()
    login(admin, live_url, "alice")
    admin.goto(f"{live_url}/t/acme/volumes/data-1/")
    # A volume with a snapshot cannot be deleted: no Delete button while it has one.
    volume_delete = admin.get_by_test_id("volume-actions").locator("[data-live-action=delete]")
    expect(volume_delete).to_be_hidden()
    admin.get_by_test_id("snapshot-before-upgrade").get_by_test_id("snapshot-delete").click()
    admin.get_by_test_id("snapshot-confirm").click()
    expect(admin.get_by_test_id("messages")).to_contain_text("Deleting snapshot before-upgrade")
    expect(admin.get_by_test_id("snapshot-before-upgrade")).to_have_count(0, timeout=PHASE_TIMEOUT)
    # The last snapshot gone, the volume's Delete button shows, without a reload.
    expect(volume_delete).to_be_visible()
    # bob's tab loses the row live.
    expect(row).to_have_count(0, timeout=PHASE_TIMEOUT)

    admin.get_by_label("New volume name").fill("data-1-copy")
    admin.get_by_role("button", name="Clone").click()
    admin.wait_for_url(f"{live_url}/t/acme/volumes/data-1-copy/")
    detail = admin.get_by_test_id("volume-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(detail.get_by_test_id("volume-spec")).to_contain_text("Another volume data-1")
    admin.screenshot(path=str(ARTIFACTS / "volume-clone-alice.png"), full_page=True)


def test_a_viewer_sees_snapshots_without_buttons(demo, make_host, live_url, new_page):
    make_host("node-a")
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data-1", size_gib=2
    )
    from compute.models import Volume
    from compute.services import snapshots as snapshot_services

    Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.READY)
    snapshot = snapshot_services.snapshot_create(
        actor=demo.bob, volume=Volume.objects.get(pk=volume.pk), name="s1"
    )
    Snapshot.objects.filter(pk=snapshot.pk).update(phase="Ready")
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/volumes/data-1/")
    row = page.get_by_test_id("snapshot-s1")
    expect(row.get_by_test_id("phase")).to_have_text("Ready")
    expect(row.get_by_test_id("snapshot-restore")).to_be_hidden()
    expect(row.get_by_test_id("snapshot-delete")).to_be_hidden()
    expect(page.get_by_test_id("snapshot-take-form")).to_have_count(0)
    expect(page.get_by_test_id("volume-clone-card")).to_have_count(0)
    assert page.goto(f"{live_url}/t/acme/volumes/data-1/snapshots/s1/restore/").status == 403


def vm_with_disk(demo, phase: str):
    """web-1 with a 1 GiB root disk, Running or (never started) Stopped."""
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="web-1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
        start=phase == Phase.RUNNING,
    )
    return wait_phase(vm, phase)


def test_bob_snapshots_his_stopped_vm_from_its_page_restores_it_and_alice_deletes_it(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    from compute.models import Host

    host = make_host("node-a")
    # As if the host could save memory (real QEMU can; the test driver cannot).
    Host.objects.filter(pk=host.pk).update(capabilities={**host.capabilities, "memory_state": True})
    vm = vm_with_disk(demo, Phase.RUNNING)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    panel = page.get_by_test_id("vm-snapshots")
    expect(panel).to_contain_text("No snapshots of this VM or its disks yet.")
    # Running: a snapshot is taken live; the note says so, and that a restore needs
    # the VM stopped; "With memory" is offered.
    note = panel.get_by_test_id("vm-snapshot-stopped")
    expect(note).to_contain_text(
        "web-1 is running: a snapshot taken now copies its disks as they are at that moment"
    )
    expect(note).to_contain_text("stop it to restore one")
    memory = panel.get_by_test_id("vm-snapshot-memory")
    expect(memory).to_be_enabled()
    panel.get_by_label("Snapshot name").fill("while-running")
    panel.get_by_role("button", name="Take VM snapshot").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Taking snapshot while-running")
    live = page.get_by_test_id("vm-snapshot-while-running")
    expect(live.get_by_test_id("snapshot-kind")).to_contain_text("taken running")
    expect(live.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    # The test driver's guest agent froze the filesystems: the message says quiesced.
    expect(live).to_contain_text("quiesced (the guest agent froze its filesystems")
    expect(page.get_by_test_id("vm-detail").get_by_test_id("phase").first).to_have_text("Running")
    axe(page)
    page.screenshot(path=str(ARTIFACTS / "vm-snapshot-live-bob.png"), full_page=True)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="stop")
    # Stopped arrives live: the note goes, and a stopped VM has no memory to save.
    expect(note).to_be_hidden(timeout=PHASE_TIMEOUT)
    expect(memory).to_be_disabled()
    snapshot_services.vm_snapshot_delete(actor=demo.alice, vm=vm, name="while-running")
    expect(live).to_have_count(0, timeout=PHASE_TIMEOUT)
    panel.get_by_label("Snapshot name").fill("before-upgrade")
    panel.get_by_role("button", name="Take VM snapshot").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Taking snapshot before-upgrade")
    row = page.get_by_test_id("vm-snapshot-before-upgrade")
    expect(row).to_contain_text("web-1-root")
    expect(row).to_contain_text("1 GiB")
    # Pending → Ready arrives live, and with it Restore (bob is an operator, not Delete).
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(row.get_by_test_id("snapshot-restore")).to_be_visible()
    expect(row.get_by_test_id("snapshot-delete")).to_be_hidden()
    axe(page)
    page.screenshot(path=str(ARTIFACTS / "vm-snapshots-bob.png"), full_page=True)

    row.get_by_test_id("snapshot-restore").click()
    confirm = page.get_by_test_id("snapshot-confirm-page")
    expect(confirm).to_contain_text("Restore every disk of web-1 from snapshot before-upgrade")
    axe(page)
    confirm.get_by_test_id("snapshot-confirm-name").fill("web-2")  # a typo refuses
    confirm.get_by_test_id("snapshot-confirm").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Type the VM's name")
    page.get_by_test_id("snapshot-confirm-name").fill("web-1")
    page.get_by_test_id("snapshot-confirm").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/web-1/#snapshots")
    expect(page.get_by_test_id("messages")).to_contain_text(
        "Restoring web-1's disks from snapshot before-upgrade"
    )
    wait_for(
        lambda: Snapshot.objects.get(name="before-upgrade").restored is not None,
        20,
        message="not restored",
    )
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)

    admin = new_page()
    login(admin, live_url, "alice")
    admin.goto(f"{live_url}/t/acme/vms/web-1/")
    admin.get_by_test_id("vm-snapshot-before-upgrade").get_by_test_id("snapshot-delete").click()
    expect(admin.get_by_test_id("snapshot-confirm-page")).to_contain_text("is not changed")
    admin.get_by_test_id("snapshot-confirm").click()
    expect(admin.get_by_test_id("messages")).to_contain_text("Deleting snapshot before-upgrade")
    expect(admin.get_by_test_id("vm-snapshot-before-upgrade")).to_have_count(
        0, timeout=PHASE_TIMEOUT
    )
    # bob's tab loses the row live, and shows the empty panel again.
    expect(row).to_have_count(0, timeout=PHASE_TIMEOUT)
    expect(panel).to_contain_text("No snapshots of this VM or its disks yet.")
    # A VM snapshot taken elsewhere (the API, a schedule) appears live.
    snapshot_services.vm_snapshot_create(actor=demo.alice, vm=vm, name="from-api")
    fresh = page.get_by_test_id("vm-snapshot-from-api")
    expect(fresh.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(fresh.get_by_test_id("snapshot-restore")).to_be_visible()
    axe(page)

    # Clone the whole (stopped) VM: a new VM with a copy of its disk.
    clone = page.get_by_test_id("vm-clone-card")
    expect(clone).to_contain_text("1 GiB of storage")
    clone.get_by_label("New VM name").fill("web-2")
    clone.get_by_role("button", name="Clone VM").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/web-2/")
    expect(page.get_by_test_id("messages")).to_contain_text("Cloning web-1 into web-2")
    detail = page.get_by_test_id("vm-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("Stopped", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("vm-volume-web-2-root")).to_contain_text("Attached")
    axe(page)
    page.screenshot(path=str(ARTIFACTS / "vm-clone-bob.png"), full_page=True)


def test_bob_schedules_snapshots_of_his_vm_and_the_beat_run_shows_up_live(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    vm_with_disk(demo, Phase.STOPPED)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    card = page.get_by_test_id("snapshot-schedule")
    expect(card).to_contain_text("No schedule: snapshots are taken by hand only.")
    card.get_by_label("daily at (UTC)").check()
    card.get_by_label("Time of day, UTC").fill("03:15")
    card.get_by_label("Keep").fill("3")
    card.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Snapshot schedule of web-1 saved.")
    card = page.get_by_test_id("snapshot-schedule")
    expect(card.get_by_test_id("snapshot-schedule-summary")).to_contain_text(
        "Daily at 03:15 UTC, keeping the newest 3"
    )
    axe(page)
    page.screenshot(path=str(ARTIFACTS / "vm-snapshot-schedule-bob.png"), full_page=True)

    # Beat's run at the scheduled time takes the snapshot; it appears on the page live.
    schedule = SnapshotSchedule.objects.get()
    snapshot_schedules_run(now=schedule.next_run.isoformat())
    name = f"auto-{schedule.next_run:%Y%m%d-%H%M}"
    row = page.get_by_test_id(f"vm-snapshot-{name}")
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    page.reload()
    expect(page.get_by_test_id("snapshot-schedule-last")).to_contain_text("Succeeded")
    card = page.get_by_test_id("snapshot-schedule")
    card.get_by_role("button", name="Remove schedule").click()
    dialog = page.locator("#vm-confirm")
    expect(dialog).to_contain_text("The snapshots it took are kept.")
    dialog.get_by_role("button", name="Remove schedule").click()
    expect(page.get_by_test_id("messages")).to_contain_text("its snapshots are kept")
    expect(page.get_by_test_id(f"vm-snapshot-{name}")).to_be_visible()


def test_bob_schedules_snapshots_of_a_volume_from_its_page(
    demo, make_host, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data-1", size_gib=2
    )
    wait_volume(volume, VolumePhase.READY)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/volumes/data-1/")
    card = page.get_by_test_id("snapshot-schedule")
    card.get_by_label("Hours between snapshots").fill("6")
    card.get_by_label("Keep").fill("2")
    card.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Snapshot schedule of data-1 saved.")
    summary = page.get_by_test_id("snapshot-schedule-summary")
    expect(summary).to_contain_text("Every 6 h, keeping the newest 2")
    axe(page)
    # Three runs of beat: two snapshots are kept, the oldest is deleted.
    schedule = SnapshotSchedule.objects.get()
    for _ in range(3):
        snapshot_schedules_run(now=schedule.next_run.isoformat())
        schedule.refresh_from_db()
        wait_for(
            lambda: not Snapshot.objects.filter(phase__in=["Pending", "Deleting"]).exists(),
            20,
            message="snapshots in flight",
        )
    page.reload()
    rows = page.get_by_test_id("snapshot-table").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("snapshot-schedule-last")).to_contain_text("Succeeded")


def test_bob_clones_his_running_vm_from_one_of_its_snapshots(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    vm = vm_with_disk(demo, Phase.STOPPED)
    snapshot_services.vm_snapshot_create(actor=demo.bob, vm=vm, name="before")
    wait_for(
        lambda: Snapshot.objects.filter(phase="Ready").exists(), 20, message="snapshot not Ready"
    )
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    wait_phase(vm, Phase.RUNNING)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    card = page.get_by_test_id("vm-clone-card")
    expect(card.get_by_label("New VM name")).to_be_disabled()  # its current disks: stopped only
    form = card.get_by_test_id("vm-clone-snapshot-form")
    expect(form.get_by_label("From snapshot")).to_have_value("before")
    form.get_by_label("Name of the clone").fill("web-1-then")
    form.get_by_test_id("vm-clone-snapshot-submit").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/web-1-then/")
    expect(page.get_by_test_id("messages")).to_contain_text(
        "Cloning web-1 into web-1-then from snapshot before"
    )
    detail = page.get_by_test_id("vm-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("Stopped", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("vm-volume-web-1-then-root")).to_contain_text("Attached")
    axe(page)


def test_bob_clones_his_stopped_vm_to_a_bigger_size(
    demo, make_host, tiny_image, flavors, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    vm_with_disk(demo, Phase.STOPPED)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    card = page.get_by_test_id("vm-clone-card")
    form = card.get_by_test_id("vm-clone-form")
    disk = form.get_by_test_id("vm-clone-disk")
    # The root disk can only grow: the field starts at the source's 1 GiB.
    expect(disk).to_have_attribute("min", "1")
    expect(disk).to_have_attribute("placeholder", "1")
    form.get_by_label("New VM name").fill("web-big")
    form.get_by_test_id("vm-clone-flavor").select_option("medium")
    disk.fill("12")
    axe(page)
    form.get_by_role("button", name="Clone VM").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/web-big/")
    expect(page.get_by_test_id("messages")).to_contain_text("Cloning web-1 into web-big")
    detail = page.get_by_test_id("vm-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("Stopped", timeout=PHASE_TIMEOUT)
    expect(detail).to_contain_text("2 vCPU")
    root = page.get_by_test_id("vm-volume-web-big-root")
    expect(root).to_contain_text("Attached")
    expect(root).to_contain_text("12 GiB")
    axe(page)
    page.screenshot(path=str(ARTIFACTS / "vm-clone-bigger-bob.png"), full_page=True)
