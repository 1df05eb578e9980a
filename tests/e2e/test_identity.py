"""A person signs in through the company's identity provider (the real local Ory
Hydra's pages) and lands in the tenant their group maps to; a person turns on an
authenticator app, then signs in with a code; wrong codes are refused and throttled."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tenants import services
from tenants.choices import Role
from tenants.models import GroupMapping
from tests.conftest import ARTIFACTS, PASSWORD, login
from tests.e2e.axe import assert_accessible
from tests.portal.identity.test_two_factor import totp

pytestmark = pytest.mark.e2e


@pytest.fixture
def page_for(browser, request):
    """Pages in contexts that accept the provider's certificate (our own CA)."""
    contexts = []

    def make():
        context = browser.new_context(
            viewport={"width": 1360, "height": 860}, ignore_https_errors=True
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for index, context in enumerate(contexts):
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for n, page in enumerate(context.pages):
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}-{n}.png"))
        context.close()


def shot(page, name: str) -> None:
    """Save the page as shown and check it with axe-core (WCAG 2.2 AA)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert_accessible(page, name)


def test_single_sign_on_lands_in_the_tenant_the_group_maps_to(demo, sso, page_for):
    services.group_mapping_save(
        actor=None,
        mapping=GroupMapping(group="acme-operators", tenant=demo.acme, role=Role.OPERATOR),
        created=True,
    )
    name, password = sso.user(groups=["acme-operators"], full_name="Olivia Operator")
    page = page_for()
    page.goto(f"{sso.base}/login/")
    button = page.get_by_test_id("sso-login")
    expect(button).to_have_text(re.compile("Sign in with Isotope IdP"))
    shot(page, "sso-login-page")
    button.click()

    expect(page.get_by_role("heading", name="Isotope identity provider")).to_be_visible()
    assert page.url.startswith("http://127.0.0.1:14446/login?login_challenge=")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(f"{sso.base}/")
    card = page.get_by_test_id("tenant-card-acme")
    expect(card).to_be_visible()
    expect(page.get_by_test_id("tenant-card-globex")).to_have_count(0)
    expect(page.get_by_test_id("user-menu")).to_contain_text(name)
    page.goto(f"{sso.base}/t/acme/")
    expect(page.locator(".iso-sidebar .iso-role")).to_have_text("Operator")
    shot(page, "sso-landed-in-acme")


def test_a_wrong_password_at_the_provider_and_a_cancel_are_shown_plainly(demo, sso, page_for):
    name, password = sso.user()
    page = page_for()
    page.goto(f"{sso.base}/login/")
    page.get_by_test_id("sso-login").click()
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page.get_by_role("button", name="Cancel").click()
    error = page.get_by_test_id("sso-error")
    expect(error).to_contain_text("The sign-in was cancelled at the identity provider.")
    expect(error).to_contain_text("The user cancelled the sign-in.")
    shot(page, "sso-cancelled")
    page.get_by_role("link", name="Back to sign in").click()
    expect(page.get_by_test_id("sso-login")).to_be_visible()


def test_totp_enrolment_then_sign_in_with_a_code_and_wrong_codes_throttled(
    demo, live_url, page_for, settings
):
    settings.MFA_TOTP_TOLERANCE = 1  # the next window's code too, so nobody waits 30 s
    page = page_for()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/profile/")
    expect(page.get_by_test_id("totp-status")).to_have_text("off")
    page.get_by_test_id("manage-2fa").click()
    page.get_by_role("link", name=re.compile("Activate")).first.click()
    # allauth asks for the password before any change of second factors.
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_test_id("totp-qr")).to_be_visible()
    secret = page.locator("#authenticator_secret").input_value()
    shot(page, "totp-activate")
    page.get_by_label("Authenticator code").fill(totp(secret))
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_text(re.compile("Authenticator app activated"))).to_be_visible()
    shot(page, "totp-recovery-codes")
    page.goto(f"{live_url}/profile/")
    expect(page.get_by_test_id("totp-status")).to_have_text("on")

    # Sign out; the password alone now leads to the code step.
    page.get_by_test_id("user-menu").click()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_url}/login/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    code = page.get_by_placeholder("Code")
    expect(code).to_be_visible()
    code.fill("123456")
    page.get_by_role("button", name="Sign In", exact=True).click()
    expect(page.get_by_test_id("field-error")).to_contain_text("Incorrect code")
    shot(page, "totp-wrong-code")
    page.get_by_placeholder("Code").fill(totp(secret, step=1))
    page.get_by_role("button", name="Sign In", exact=True).click()
    page.wait_for_url(f"{live_url}/")
    expect(page.get_by_test_id("tenant-card-acme")).to_be_visible()

    # Another browser guessing codes is stopped after ISOTOPE_MFA_FAILURE_LIMIT tries.
    other = page_for()
    other.goto(f"{live_url}/login/")
    other.get_by_label("Username").fill("bob")
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Sign in").click()
    for n in range(settings.ISOTOPE_MFA_FAILURE_LIMIT):
        other.get_by_placeholder("Code").fill(f"{n:06d}")
        other.get_by_role("button", name="Sign In", exact=True).click()
        expect(other.get_by_test_id("field-error")).to_contain_text("Incorrect code")
    other.get_by_placeholder("Code").fill(totp(secret, step=1))
    other.get_by_role("button", name="Sign In", exact=True).click()
    expect(other.get_by_test_id("field-error")).to_contain_text("Too many failed login attempts")
    assert other.url.endswith("/accounts/2fa/authenticate/")
    shot(other, "totp-throttled")
