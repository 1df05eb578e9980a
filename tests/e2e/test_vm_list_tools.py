"""The VM list in the browser: bob searches, filters and sorts (the URL keeps it, so a
reload or a shared link shows the same list), then stops two VMs with one confirmation
and sees each result (libvirt's test driver, no worker)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from compute.choices import DesiredState, Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def names(page) -> list[str]:
    return page.locator('tr[data-live-kind="vm"]').evaluate_all(
        "rows => rows.map(r => r.dataset.liveName)"
    )


def test_bob_filters_sorts_and_stops_two_vms_with_one_confirmation(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    make_host("node-a")
    for name, phase, labels in [
        ("web-1", Phase.RUNNING, {"tier": "web"}),
        ("web-2", Phase.RUNNING, {"tier": "web"}),
        ("web-3", Phase.STOPPED, {"tier": "web"}),
        ("db-1", Phase.RUNNING, {"tier": "db"}),
    ]:
        vm = vm_services.vm_create(
            actor=demo.bob,
            tenant=demo.acme,
            name=name,
            image="tiny",
            vcpus=1,
            memory_mib=256,
            labels=labels,
        )
        VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/")
    assert names(page) == ["db-1", "web-1", "web-2", "web-3"]

    page.get_by_label("Search").fill("web")
    page.get_by_label("Label").fill("tier=web")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator('tr[data-live-kind="vm"]')).to_have_count(3)
    page.get_by_test_id("sort-name").click()  # already by name: now reversed
    expect(page.get_by_test_id("sort-name").locator("..")).to_have_attribute(
        "aria-sort", "descending"
    )
    assert names(page) == ["web-3", "web-2", "web-1"]
    state = parse_qs(urlparse(page.url).query)
    assert state == {"q": ["web"], "label": ["tier=web"], "sort": ["-name"]}
    page.reload()  # the URL is the state
    assert names(page) == ["web-3", "web-2", "web-1"]
    expect(page.get_by_label("Search")).to_have_value("web")
    axe(page)

    page.get_by_label("Tick web-1").check()
    page.get_by_label("Tick web-3").check()
    page.get_by_test_id("vm-bulk").get_by_role("button", name="Stop").click()
    confirm = page.get_by_test_id("bulk-confirm")
    expect(confirm).to_contain_text("Stop 2 VMs?")
    axe(page)
    confirm.get_by_role("button", name="Stop 2 VMs").click()
    results = page.get_by_test_id("bulk-results")
    expect(results).to_contain_text("Stop: 1 of 2 requested")
    expect(results.locator('[data-name="web-1"]')).to_contain_text("Stop requested.")
    expect(results.locator('[data-name="web-3"]')).to_contain_text(
        "Cannot stop web-3 while it is Stopped."
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "vm-bulk-results.png"), full_page=True)
    axe(page)
    assert VirtualMachine.objects.get(name="web-1").desired_state == DesiredState.STOPPED
    assert VirtualMachine.objects.get(name="web-2").desired_state == DesiredState.RUNNING

    page.get_by_role("link", name="Back to the VMs").click()
    page.get_by_label("Phase").select_option("Running")
    page.get_by_role("button", name="Apply").click()
    page.screenshot(path=str(ARTIFACTS / "vm-list-filtered.png"), full_page=True)
    page.goto(f"{live_url}/t/acme/vms/?phase=Sleeping")
    expect(page.get_by_test_id("list-errors")).to_contain_text("Unknown phase 'Sleeping'")


def test_carol_reads_a_vm_as_yaml_and_json_from_its_page(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    page.get_by_test_id("vm-manifest-link").click()
    manifest = page.get_by_test_id("manifest")
    expect(manifest).to_have_attribute("data-format", "yaml")
    expect(manifest).to_contain_text("metadata:")
    expect(manifest).to_contain_text("name: web-1")
    axe(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "vm-manifest-yaml.png"), full_page=True)
    page.get_by_test_id("manifest-formats").get_by_role("link", name="JSON").click()
    expect(manifest).to_have_attribute("data-format", "json")
    expect(manifest).to_contain_text('"name": "web-1"')


def test_carol_chooses_rows_per_page_and_the_choice_follows_the_pages(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    import uuid

    from compute.models import Host, Image

    make_host("node-a")
    host, image = Host.objects.get(), Image.objects.get()
    VirtualMachine.objects.bulk_create(
        VirtualMachine(
            uid=uuid.uuid4(),
            tenant=demo.acme,
            name=f"vm-{n:03d}",
            vcpus=1,
            memory_mib=256,
            image=image,
            host=host,
            phase=Phase.RUNNING,
        )
        for n in range(60)
    )
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/vms/")
    rows = page.locator('tr[data-live-kind="vm"]')
    footer = page.get_by_test_id("vm-pages")
    expect(rows).to_have_count(50)
    expect(footer).to_contain_text("1–50 of 60")
    choices = page.get_by_role("group", name="Rows per page")
    expect(choices.locator('[aria-current="true"]')).to_have_text("50")
    axe(page)

    choices.get_by_role("link", name="25").click()
    expect(rows).to_have_count(25)
    expect(footer).to_contain_text("1–25 of 60")
    footer.get_by_role("link", name="Next").click()
    expect(footer).to_contain_text("26–50 of 60")
    assert parse_qs(urlparse(page.url).query) == {"per_page": ["25"], "page": ["2"]}
    assert names(page)[0] == "vm-025"

    # Filtering keeps the choice; choosing again starts at the first page.
    page.get_by_label("Search").fill("vm-0")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(25)
    assert parse_qs(urlparse(page.url).query)["per_page"] == ["25"]
    page.get_by_role("group", name="Rows per page").get_by_role("link", name="100").click()
    expect(rows).to_have_count(60)
    expect(page.get_by_test_id("vm-pages")).to_contain_text("1–60 of 60")
    axe(page)
    page.goto(f"{live_url}/t/acme/vms/?per_page=25&page=2")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("vm-pages").screenshot(path=ARTIFACTS / "vm-list-rows-per-page.png")
