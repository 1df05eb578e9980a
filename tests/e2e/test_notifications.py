"""The notification centre in the browser: a failure rings the bell live on whatever
page you are on, the list page marks it read, the profile page chooses how you hear."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from monitoring.notifications import preferences_of
from monitoring.services import event_publish
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def test_a_failure_rings_the_bell_live_and_the_list_marks_it_read(demo, live_url, new_page, axe):
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/profile/")  # a page of no tenant: the bell is live anyway
    page.wait_for_function(
        "[...window.Isotope.live.streams.keys()].some(s => s.startsWith('notify.'))"
    )
    count = page.get_by_test_id("notification-count")
    expect(count).to_be_hidden()

    event_publish(
        tenant=demo.acme,
        kind="vm",
        name="web1",
        type="Warning",
        reason="Failed",
        message="The host did not answer after 5 retries.",
    )
    expect(count).to_have_text("1")
    page.get_by_test_id("notification-bell").get_by_role("button", name="Notifications").click()
    expect(page.locator("[data-notification-list]")).to_contain_text("VM failed: vm/web1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notification-bell.png"))
    axe(page, "notification-bell", include="[data-testid=notification-bell]")

    page.get_by_role("link", name="All notifications").click()
    listing = page.get_by_test_id("notification-page-list")
    expect(listing).to_contain_text("The host did not answer after 5 retries.")
    expect(listing).to_contain_text("A VM failed")
    page.screenshot(path=str(ARTIFACTS / "notification-list.png"), full_page=True)
    axe(page, "notification-list")
    page.get_by_role("button", name="Mark read").click()
    expect(page.get_by_text("0 unread", exact=False)).to_be_visible()
    expect(count).to_be_hidden()


def test_the_profile_page_turns_off_vm_failure_emails(demo, live_url, new_page, axe):
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/profile/")
    card = page.get_by_test_id("notification-preferences")
    email = card.get_by_label("A VM failed by email")
    expect(email).to_be_checked()
    email.uncheck()
    card.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Notification settings saved.")).to_be_visible()
    expect(
        page.get_by_test_id("notification-preferences").get_by_label("A VM failed by email")
    ).not_to_be_checked()
    page.screenshot(path=str(ARTIFACTS / "notification-preferences.png"), full_page=True)
    axe(page, "notification-preferences")
    assert preferences_of(demo.bob)["vm.failed"] == {"in_app": True, "email": False}
