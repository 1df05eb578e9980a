"""Dark mode in Chromium: the portal follows the system's colour scheme from the first
paint, the top bar's switch overrides it per user, and both themes pass axe-core."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.services import vms as vm_services
from tenants.models import UserPreference
from tests.conftest import ARTIFACTS, login
from tests.e2e.axe import assert_accessible

pytestmark = pytest.mark.e2e

# Records the theme at the moment <body> starts: what the first paint uses.
THEME_AT_BODY = """
new MutationObserver((changes, observer) => {
  if (document.body) {
    window.__themeAtBody = document.documentElement.dataset.bsTheme;
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""


@pytest.fixture
def scheme_page(browser):
    contexts = []

    def make(scheme: str, **options):
        context = browser.new_context(
            viewport={"width": 1360, "height": 860}, color_scheme=scheme, **options
        )
        context.set_default_timeout(10_000)
        context.add_init_script(THEME_AT_BODY)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def theme(page) -> str:
    return page.evaluate("() => document.documentElement.dataset.bsTheme")


def test_the_portal_follows_the_system_scheme_from_the_first_paint_and_passes_axe_in_both(
    demo, make_host, tiny_image, live_url, scheme_page
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("dark", "light"):
        page = scheme_page(scheme)
        page.goto(f"{live_url}/login/")
        assert page.evaluate("() => window.__themeAtBody") == scheme
        assert_accessible(page, f"login ({scheme})")
        page.screenshot(path=str(ARTIFACTS / f"theme-{scheme}-login.png"))
        login(page, live_url, "bob")
        for path, name in [
            ("/", "dashboard"),
            ("/t/acme/", "overview"),
            ("/t/acme/vms/", "vm-list"),
            ("/t/acme/vms/new/", "vm-form"),
            ("/t/acme/vms/web-1/", "vm-detail"),
            ("/t/acme/events/", "events"),
        ]:
            page.goto(live_url + path)
            assert page.evaluate("() => window.__themeAtBody") == scheme, path
            assert_accessible(page, f"{path} ({scheme})")
            page.screenshot(path=str(ARTIFACTS / f"theme-{scheme}-{name}.png"), full_page=True)


def test_the_top_bar_switch_overrides_the_system_for_this_user_everywhere(
    demo, live_url, scheme_page
):
    page = scheme_page("dark")
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/vms/")
    assert theme(page) == "dark"
    switch = page.get_by_test_id("theme-switch")
    switch.get_by_role("button", name="Theme: Follow the system").click()
    switch.get_by_role("button", name="Light").click()
    # Back on the same page, light although the system is dark.
    page.wait_for_url(f"{live_url}/t/acme/vms/")
    assert theme(page) == "light"
    assert page.evaluate("() => window.__themeAtBody") == "light"
    expect(switch.get_by_role("button", name="Theme: Light")).to_be_visible()
    assert UserPreference.objects.get(user=demo.carol).theme == "light"

    # Stored per user: another browser, without JavaScript even, gets it from the server.
    other = scheme_page("light", java_script_enabled=False)
    login(other, live_url, "carol")
    assert theme(other) == "light"
    UserPreference.objects.filter(user=demo.carol).update(theme="dark")
    other.goto(f"{live_url}/t/acme/")
    assert theme(other) == "dark"
    # Someone else still follows their system.
    dave = scheme_page("light")
    login(dave, live_url, "dave")
    assert theme(dave) == "light"
