"""Quota requests end to end: alice asks for two more VMs from the overview, the platform
admin approves in Django admin, and alice's overview and notification bell follow
without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tenants.models import AuditLog, Quota
from tests.conftest import ARTIFACTS, live_subscribed, login
from usage.models import QuotaRequest

pytestmark = pytest.mark.e2e


def notifications_followed(page) -> None:
    """Wait until the page's websocket follows the user's notification stream."""
    page.wait_for_function(
        "[...window.Isotope.live.streams.keys()].some(s => s.startsWith('notify.'))"
    )


def test_alice_asks_for_two_vms_the_admin_approves_and_her_page_follows_live(
    demo, live_url, new_page, axe
):
    alice = new_page()
    login(alice, live_url, "alice")
    alice.goto(f"{live_url}/t/acme/")
    quota_vms = alice.get_by_test_id("quota-vms")
    expect(quota_vms).to_have_text("0 / 20 VMs")
    expect(alice.get_by_test_id("notification-count")).to_be_hidden()

    # Closed with × as it opens (a change of mind): it closes, nothing is sent.
    alice.get_by_test_id("quota-request-open").click()
    form = alice.get_by_test_id("quota-request-form")
    form.get_by_role("button", name="Close").dispatch_event("click")
    expect(alice.locator(".modal-backdrop")).to_have_count(0)
    expect(form).to_be_hidden()

    alice.get_by_test_id("quota-request-open").click()
    expect(form).to_be_visible()
    form.get_by_label("Virtual machines (+VMs)").fill("2")
    form.get_by_label("Why").fill("Two more web servers for the spring launch.")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    alice.screenshot(path=str(ARTIFACTS / "quota-request-form.png"))
    axe(alice, "quota-request-form")
    form.get_by_role("button", name="Send request").click()

    expect(alice.get_by_text(re.compile(r"Quota request qr-\d+ sent"))).to_be_visible()
    name = QuotaRequest.objects.get(tenant=demo.acme).name
    row = alice.get_by_test_id(f"quota-request-{name}")
    expect(row).to_contain_text("+2 VMs")
    expect(row.locator('[data-request-field="state"]')).to_have_text("Pending")
    expect(alice.get_by_test_id("quota-request-open")).to_be_disabled()
    live_subscribed(alice, "acme")
    notifications_followed(alice)
    alice.evaluate("window.__sameDocument = true")

    admin = new_page()
    login(admin, live_url, "admin")
    admin.goto(f"{live_url}/admin/usage/quotarequest/")
    admin.get_by_role("link", name=name).click()
    review = admin.get_by_test_id("quota-request-review")
    expect(review).to_contain_text("Two more web servers for the spring launch.")
    expect(review).to_contain_text("Usage, last 30 days")
    expect(admin.get_by_label("Grant Virtual machines")).to_have_value("2")
    admin.get_by_label("Reason").fill("Enjoy the launch.")
    admin.screenshot(path=str(ARTIFACTS / "quota-request-admin-review.png"), full_page=True)
    axe(admin, "quota-request-admin-review")
    admin.get_by_test_id("quota-request-approve").click()
    expect(admin.get_by_text(f"{name} of acme: approved.")).to_be_visible()

    # Alice's page, untouched since: the limit, the request and the bell follow.
    expect(quota_vms).to_have_text("0 / 22 VMs", timeout=5000)
    expect(row.locator('[data-request-field="state"]')).to_have_text("Approved")
    expect(row).to_contain_text("Granted +2 VMs. Enjoy the launch.")
    expect(alice.get_by_test_id("quota-request-open")).to_be_enabled()
    count = alice.get_by_test_id("notification-count")
    expect(count).to_have_text("1")
    assert alice.evaluate("window.__sameDocument") is True
    alice.get_by_test_id("notification-bell").get_by_role("button", name="Notifications").click()
    bell = alice.locator("[data-notification-list]")
    expect(bell).to_contain_text("Quota request approved (acme)")
    expect(bell).to_contain_text("approved by admin: +2 VMs. Enjoy the launch.")
    alice.screenshot(path=str(ARTIFACTS / "quota-request-approved-live.png"))
    axe(alice, "quota-request-approved-live")

    assert Quota.objects.get(tenant=demo.acme).vms == 22
    assert AuditLog.objects.filter(action="quota.set", actor=demo.admin).exists()

    # Opening the notification reads it; the count goes.
    bell.get_by_text("Quota request approved (acme)").click()
    expect(alice).to_have_url(re.compile(r"/t/acme/$"))
    expect(alice.get_by_test_id("notification-count")).to_be_hidden()
