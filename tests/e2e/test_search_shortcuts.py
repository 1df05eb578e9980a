"""The top bar's search and the keyboard shortcuts in Chromium: "/" focuses the search,
the results are the user's tenants' objects only, "?" shows the shortcuts, "g v" goes to
the VM list; axe-core finds nothing serious on the results or with the dialog open."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.services import vms as vm_services
from tests.conftest import ARTIFACTS, login
from tests.e2e.axe import assert_accessible

pytestmark = pytest.mark.e2e


def test_bob_searches_with_the_keyboard_and_finds_only_his_tenants_vms(
    demo, make_host, tiny_image, live_url, new_page
):
    make_host("node-a")
    for tenant, name in ((demo.acme, "web-1"), (demo.acme, "db-1"), (demo.globex, "web-secret")):
        vm_services.vm_create(
            actor=None, tenant=tenant, name=name, image="tiny", vcpus=1, memory_mib=256
        )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/")

    page.keyboard.press("/")
    search = page.get_by_test_id("global-search")
    expect(search).to_be_focused()
    page.keyboard.type("web")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_url}/search/?q=web")
    expect(page.get_by_test_id("search-summary")).to_have_text("1 result for “web”")
    hits = page.get_by_test_id("search-hit")
    expect(hits).to_have_count(1)
    expect(hits.first).to_have_attribute("data-name", "web-1")
    expect(page.get_by_text("web-secret")).to_have_count(0)
    expect(search).to_have_value("web")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-results.png"), full_page=True)
    assert_accessible(page, "search results")

    # Typing "/" into the search box types it; Escape leaves the box for the shortcuts.
    search.focus()
    page.keyboard.press("End")
    page.keyboard.type("/")
    expect(search).to_have_value("web/")
    page.keyboard.press("Escape")
    expect(search).not_to_be_focused()

    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Search your tenants' VMs, workloads, volumes and images")
    expect(dialog).to_have_css("opacity", "1")  # faded in: axe checks what is shown
    assert_accessible(page, "shortcut help")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    hits.first.get_by_role("link", name="web-1").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/web-1/")
    page.keyboard.press("g")
    page.keyboard.press("v")
    page.wait_for_url(f"{live_url}/t/acme/vms/")
    page.keyboard.press("g")
    page.keyboard.press("d")
    page.wait_for_url(f"{live_url}/")


def test_an_empty_search_says_what_to_try(demo, live_url, new_page):
    page = new_page()
    login(page, live_url, "carol")
    page.get_by_test_id("global-search").fill("nothing-here")
    page.get_by_test_id("global-search").press("Enter")
    page.wait_for_url(f"{live_url}/search/?q=nothing-here")
    expect(page.get_by_text("Nothing in your tenants matches.")).to_be_visible()
    assert_accessible(page, "empty search")
