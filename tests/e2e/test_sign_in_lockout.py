"""A person who keeps typing the wrong password is told plainly to wait (Chromium)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = pytest.mark.e2e


def test_after_ten_wrong_passwords_the_sign_in_page_says_to_wait(demo, live_url, new_page, axe):
    page = new_page()
    page.goto(f"{live_url}/login/")
    for n in range(9):
        page.get_by_label("Username").fill("carol")
        page.get_by_label("Password").fill(f"not-it-{n}")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("login-error")).to_have_text("Wrong username or password.")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("still-not-it")
    with page.expect_response(lambda r: r.url.endswith("/login/")) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 429
    lockout = page.get_by_test_id("login-lockout")
    expect(lockout).to_contain_text("Too many failed sign-in attempts")
    expect(lockout).to_contain_text("Try again in 15 minutes")
    expect(page.get_by_test_id("login-error")).to_have_count(0)
    expect(page.get_by_label("Username")).to_have_value("carol")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sign-in-lockout.png"))
    axe(page, "sign-in-lockout")
    # The right password does not get through while the lockout lasts.
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("login-lockout")).to_be_visible()
    assert page.url == f"{live_url}/login/"
