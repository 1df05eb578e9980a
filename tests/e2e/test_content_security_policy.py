"""The Content-Security-Policy in Chromium: the portal's pages, the staff pages, the
admin and the API docs run under it without one violation or console error (their live
websocket included), and markup slipped into a page cannot run script."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from compute.services import vms as vm_services
from tests.compute.test_views_workloads import make as make_workload
from tests.compute.test_views_workloads import world  # noqa: F401 - a fixture
from tests.conftest import live_subscribed, login
from tests.e2e.test_accessibility import admin_pages
from usage.services import requests as request_services

pytestmark = pytest.mark.e2e

# Before any page script: every violation the page reports, as "directive: blocked URI".
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.effectiveDirective + ": " + (e.blockedURI || "inline") +
    " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def watched(new_page):
    """A page that records CSP violations and console errors; returns (page, errors)."""
    page = new_page()
    errors: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)

    def console(message) -> None:
        # The admin's pages name no icon: Chromium asks for /favicon.ico, a 404.
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            errors.append(f"{page.url}: {message.text} ({message.location['url']})")

    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    return page, errors


def visit(page, url: str) -> list[str]:
    """Open ``url`` and let its scripts start; returns the violations it reported."""
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response.status}"
    assert response.headers.get("content-security-policy"), f"{url}: no policy"
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # deferred scripts, the first live frames, fetches
    return [f"{url}: {v}" for v in page.evaluate("window.__cspViolations")]


def test_the_pages_run_under_the_policy_with_no_violation_or_console_error(
    world,  # noqa: F811
    make_host,
    tiny_image,
    flavors,
    live_url,
    new_page,
):
    demo = world
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    make_workload(demo, name="shop", replicas=2)  # two pods: the log page's picker
    request = request_services.quota_request_create(
        actor=demo.alice, tenant=demo.acme, increase={"vms": 2}, reason="The spring launch."
    )
    page, errors = watched(new_page)
    login(page, live_url, "admin")
    found: list[str] = []
    for path in [
        "/",
        "/t/acme/",
        "/t/acme/vms/",
        "/t/acme/vms/web-1/",
        "/t/acme/vms/web-1/console/",
        "/t/acme/images/",
        "/t/acme/volumes/",
        "/t/acme/networks/",
        "/t/acme/workloads/",
        "/t/acme/workloads/shop/",
        "/t/acme/events/",
        "/t/acme/usage/",
        "/profile/",
        "/staff/migrations/",
        "/admin/",
        "/admin/compute/host/",
        f"/admin/usage/quotarequest/{request.pk}/change/",
        "/api/v1/docs/",
    ]:
        found += visit(page, live_url + path)
        if path == "/t/acme/vms/":
            live_subscribed(page)  # the /ws/ websocket connected under connect-src 'self'
        if path.startswith("/admin/usage/quotarequest/"):
            page.wait_for_function("() => window.Chart && Chart.getChart('history-chart')")
        if path == "/api/v1/docs/":  # Swagger UI started from its script file
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Isotope API")
    assert not found, "\n".join(found)
    assert not errors, "\n".join(errors)


def test_every_admin_page_runs_under_the_policy(demo, live_url, new_page):
    page, errors = watched(new_page)
    login(page, live_url, "admin")
    found: list[str] = []
    for path in admin_pages(demo.admin):
        found += visit(page, live_url + path)
    assert not found, "\n".join(found)
    assert not errors, "\n".join(errors)


def test_the_moved_handlers_still_work(world, make_host, live_url, new_page):  # noqa: F811
    make_host("node-a")
    make_workload(world, name="shop", replicas=2)
    page, errors = watched(new_page)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    login(page, live_url, "admin")

    # The log page's pod picker sends its form when a pod is picked.
    visit(page, f"{live_url}/t/acme/workloads/shop/logs/")
    page.get_by_label("Pod").select_option("shop-abc-1")
    page.wait_for_url(re.compile(r"/logs/\?pod=shop-abc-1$"))
    expect(page.get_by_label("Pod")).to_have_value("shop-abc-1")

    # Drain asks in the page's dialog, naming the host; Cancel sends nothing.
    visit(page, f"{live_url}/staff/migrations/")
    page.get_by_test_id("drain-hosts").get_by_role("button", name="Drain").click()
    dialog = page.locator("#vm-confirm")
    expect(dialog).to_contain_text("Put node-a in maintenance and migrate every VM away?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert "/staff/migrations/" in page.url

    # A new token's Copy button puts the key on the clipboard.
    visit(page, f"{live_url}/profile/")
    page.locator("#token-name").fill("ci")
    page.get_by_role("button", name="Create token").click()
    key = page.get_by_test_id("new-token").get_by_role("textbox").input_value()
    page.get_by_test_id("new-token").get_by_role("button", name="Copy").click()
    page.wait_for_function("key => navigator.clipboard.readText().then(t => t === key)", arg=key)
    assert not page.evaluate("window.__cspViolations")
    assert not errors, "\n".join(errors)


def test_markup_slipped_into_a_page_does_not_run_script(demo, live_url, new_page):
    page, _ = watched(new_page)
    login(page, live_url, "bob")
    assert not visit(page, f"{live_url}/t/acme/vms/")
    page.evaluate(
        """() => {
          document.body.insertAdjacentHTML("beforeend", '<img src="x" onerror="window.__x = 1">');
          const script = document.createElement("script");
          script.textContent = "window.__y = 1";
          document.body.appendChild(script);
        }"""
    )
    page.wait_for_function("window.__cspViolations.length >= 2")
    assert page.evaluate("[typeof window.__x, typeof window.__y]") == ["undefined", "undefined"]
    directives = {v.split(":")[0] for v in page.evaluate("window.__cspViolations")}
    assert directives == {"script-src-attr", "script-src-elem"}, directives
