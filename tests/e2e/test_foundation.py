"""What the demo users see when they sign in (Chromium, Playwright)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tenants import services
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def test_alice_signs_in_and_sees_acmes_quota_bars(demo, live_url, new_page, axe):
    services.quota_set(actor=demo.admin, tenant=demo.acme, limits={"vms": 12, "cpu": 24})
    page = new_page()
    login(page, live_url, "alice")
    expect(page.get_by_test_id("tenant-card-acme")).to_be_visible()
    page.get_by_role("link", name="ACME Corporation").first.click()
    page.wait_for_url(f"{live_url}/t/acme/")
    expect(page.get_by_role("heading", name="ACME Corporation")).to_be_visible()
    bars = page.get_by_test_id("quota-bars")
    for resource in ("cpu", "memory", "storage", "vms", "pods"):
        expect(bars.locator(f"[data-resource={resource}] .progress")).to_be_visible()
    expect(page.get_by_test_id("quota-vms")).to_contain_text("0 / 12")
    expect(page.get_by_test_id("quota-cpu")).to_contain_text("0 / 24")
    expect(page.get_by_test_id("manage-members")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "overview-alice.png"), full_page=True)
    axe(page, "overview-alice")


def test_carol_the_viewer_sees_no_admin_controls(demo, live_url, new_page):
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/")
    expect(page.get_by_test_id("quota-bars")).to_be_visible()
    expect(page.get_by_test_id("manage-members")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Admin"))).to_have_count(0)
    page.goto(f"{live_url}/t/acme/members/")
    expect(page.get_by_test_id("members-table")).to_contain_text("alice")
    expect(page.get_by_test_id("member-add-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Save")).to_have_count(0)


def test_dave_cannot_open_acme(demo, live_url, new_page):
    page = new_page()
    login(page, live_url, "dave")
    expect(page.get_by_test_id("tenant-card-acme")).to_have_count(0)
    response = page.goto(f"{live_url}/t/acme/")
    assert response.status == 404
    expect(page.get_by_text("does not exist, or you do not have access")).to_be_visible()
    page.get_by_test_id("tenant-switcher").click()
    expect(page.get_by_role("link", name=re.compile("ACME"))).to_have_count(0)


def test_wrong_password_shows_a_clear_error(demo, live_url, new_page):
    page = new_page()
    page.goto(f"{live_url}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong username or password")


def test_alice_adds_erin_as_viewer_and_erin_then_sees_acme(demo, live_url, new_page):
    page = new_page()
    login(page, live_url, "alice")
    page.goto(f"{live_url}/t/acme/members/")
    form = page.get_by_test_id("member-add-form")
    form.get_by_label("Username").fill("erin")
    form.get_by_label("Role").select_option("viewer")
    form.get_by_role("button", name="Add member").click()
    expect(page.get_by_test_id("messages")).to_contain_text("erin added as viewer")
    expect(page.locator("tr[data-member=erin]")).to_contain_text("Viewer")

    other = new_page()
    login(other, live_url, "erin")
    expect(other.get_by_test_id("tenant-card-acme")).to_be_visible()


def test_a_user_creates_an_api_token_that_is_shown_once(demo, live_url, new_page):
    page = new_page()
    login(page, live_url, "bob")
    page.get_by_test_id("user-menu").click()
    page.get_by_role("link", name=re.compile("API tokens")).click()
    page.get_by_label("Name").fill("ci-pipeline")
    page.get_by_role("button", name="Create token").click()
    key = page.locator("#new-token-value").input_value()
    assert re.fullmatch(r"iso_[0-9a-f]{12}_[\w-]{20,}", key)
    response = page.request.get(
        f"{live_url}/api/v1/tenants/", headers={"Authorization": f"Token {key}"}
    )
    assert response.status == 200
    assert [t["metadata"]["name"] for t in response.json()["items"]] == ["acme"]
    page.reload()
    expect(page.get_by_test_id("new-token")).to_have_count(0)
