"""Volumes in the browser against a real Celery worker and libvirt's test driver."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.choices import Phase, VolumePhase
from compute.models import Volume
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import ARTIFACTS, live_subscribed, login, wait_for

pytestmark = pytest.mark.e2e

PHASE_TIMEOUT = 20_000


def test_bob_creates_a_volume_attaches_it_to_a_running_vm_and_sees_it_there_live(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    wait_phase(vm, Phase.RUNNING)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # A second tab keeps the VM page open the whole time: it must follow by itself.
    watcher = new_page()
    login(watcher, live_url, "bob")
    watcher.goto(f"{live_url}/t/acme/vms/web-1/")
    panel = watcher.get_by_test_id("vm-volumes")
    expect(panel.locator("[data-vm-volumes-empty]")).to_contain_text("No volumes")
    expect(panel.locator("[data-vm-volumes-empty]")).to_be_visible()

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/")
    page.get_by_role("link", name="Volumes").first.click()
    page.wait_for_url(f"{live_url}/t/acme/volumes/")
    expect(page.get_by_test_id("volume-empty")).to_be_visible()
    page.get_by_role("link", name="Create volume").click()
    page.wait_for_url(f"{live_url}/t/acme/volumes/new/")
    expect(page.get_by_test_id("left-storage")).to_contain_text("200 of 200 GiB of storage left")
    page.get_by_label("Name").fill("data-1")
    page.get_by_label("Size (GiB)").fill("3")
    expect(page.get_by_label("Format")).to_be_visible()
    page.get_by_label("Kubernetes claim").check()
    expect(page.get_by_label("Format")).to_be_hidden()  # local-only fields follow the class
    page.get_by_label("Local disk").check()
    page.screenshot(path=str(ARTIFACTS / "volume-form-bob.png"), full_page=True)
    axe(page, "volume-form-bob")
    page.get_by_role("button", name="Create volume").click()

    page.wait_for_url(f"{live_url}/t/acme/volumes/data-1/")
    expect(page.get_by_test_id("messages")).to_contain_text("data-1 accepted")
    detail = page.get_by_test_id("volume-detail")
    # Pending → Ready arrives live, and with it the attach form.
    expect(detail.get_by_test_id("phase").first).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    form = page.get_by_test_id("volume-attach-form")
    expect(form).to_be_visible()
    form.get_by_label("Virtual machine").select_option("web-1")
    page.screenshot(path=str(ARTIFACTS / "volume-detail-bob.png"), full_page=True)
    axe(page, "volume-detail-bob")
    form.get_by_role("button", name="Attach").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Attaching data-1 to web-1")
    expect(detail.get_by_test_id("phase").first).to_have_text("Attached", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("volume-attachment")).to_contain_text("web-1 vdb")

    # The VM page that stayed open shows the new disk, without a reload.
    row = watcher.get_by_test_id("vm-volume-data-1")
    expect(row).to_contain_text("vdb", timeout=PHASE_TIMEOUT)
    expect(row.get_by_test_id("volume-phase")).to_have_text("Attached", timeout=PHASE_TIMEOUT)
    expect(row).to_contain_text("3 GiB")
    expect(panel.locator("[data-vm-volumes-empty]")).to_be_hidden()
    watcher.screenshot(path=str(ARTIFACTS / "vm-volumes-live.png"), full_page=True)
    axe(watcher, "vm-volumes-live")

    # Detach from the row that arrived live asks first, then the row goes (live).
    row.get_by_role("button", name="Detach").click()
    modal = watcher.locator("#vm-confirm")
    expect(modal).to_contain_text("Detach data-1 from web-1?")
    modal.get_by_role("button", name="Detach").click()
    expect(watcher.get_by_test_id("vm-volume-data-1")).to_have_count(0, timeout=PHASE_TIMEOUT)
    volume = Volume.objects.get(name="data-1")
    assert volume.vm is None


def test_a_volume_attached_elsewhere_meanwhile_is_not_swapped_for_another(
    demo, make_host, tiny_image, celery_worker, live_url, new_page
):
    """bob picks data-2 on web-1's page; before he clicks Attach, data-2 is attached to
    web-2 (another tab, another user). The list used to drop data-2 and the browser
    chose data-1 in its place without a word: Attach attached the wrong disk."""
    make_host("node-a")
    vms = [
        vm_services.vm_create(
            actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
        )
        for name in ("web-1", "web-2")
    ]
    for vm in vms:
        wait_phase(vm, Phase.RUNNING)
    for name in ("data-1", "data-2"):
        volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name=name, size_gib=1)
    wait_for(lambda: Volume.objects.filter(phase=VolumePhase.READY).count() == 2, 30)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    live_subscribed(page)
    form = page.get_by_test_id("vm-volume-attach-form")
    choice = form.get_by_label("Attach a volume")
    choice.select_option("data-2")
    volume_services.volume_attach(
        actor=demo.bob, volume=Volume.objects.get(name="data-2"), vm=vms[1]
    )
    expect(choice.locator('option[value="data-2"]')).to_be_disabled(timeout=PHASE_TIMEOUT)
    expect(choice).to_have_value("")  # "Choose a volume", not data-1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    form.screenshot(path=str(ARTIFACTS / "vm-attach-volume-taken.png"))
    form.get_by_role("button", name="Attach").click()
    # The browser asks for a choice: nothing is sent.
    assert choice.evaluate("el => el.validity.valueMissing")
    expect(form).not_to_have_attribute("data-iso-sent", "1")
    assert Volume.objects.get(name="data-1").vm is None
    # data-1 is still on offer and attaches when chosen.
    choice.select_option("data-1")
    form.get_by_role("button", name="Attach").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Attaching data-1 to web-1")


def test_a_viewer_sees_volumes_but_no_buttons_or_forms(
    demo, make_host, tiny_image, celery_worker, live_url, new_page
):
    from compute.services import volumes as volume_services

    make_host("node-a")
    volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="shared", size_gib=2)
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/volumes/")
    row = page.locator('tr[data-volume="shared"]')
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(page.get_by_role("link", name="Create volume")).to_have_count(0)
    expect(row.get_by_role("button")).to_have_count(0)
    page.goto(f"{live_url}/t/acme/volumes/shared/")
    expect(page.get_by_test_id("volume-attach-form")).to_have_count(0)
    expect(page.get_by_test_id("volume-resize-form")).to_have_count(0)
