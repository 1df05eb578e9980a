"""The page says when it may be behind: its live connection is down, its user was signed
out, or a check it made after a resync could not reach the server. Nothing is shown
stale without a word."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from compute.backends import backend_for_host
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from monitoring.services import event_publish, resource_publish
from tests.conftest import ARTIFACTS, live_subscribed, login
from tests.e2e.axe import assert_accessible

pytestmark = pytest.mark.e2e

WS = re.compile(r".*/ws/(\?.*)?$")


class Relay:
    """The page's websockets routed through the test. With ``refusing`` set, a new one
    is closed before it opens (the server cannot be reached); with ``cut`` set, nothing
    more reaches the page on the open one."""

    def __init__(self):
        self.sockets = []
        self.refusing = False
        self.cut = False

    def __call__(self, ws) -> None:
        self.sockets.append(ws)
        if self.refusing:
            ws.close(code=1011, reason="unreachable")
            return
        server = ws.connect_to_server()
        server.on_message(lambda message: None if self.cut else ws.send(message))

    def drop(self) -> None:
        """The open connection fails (the page's end closes)."""
        self.sockets[-1].close(code=4000, reason="network blip")


def vm_page(new_page, live_url, relay: Relay, path: str = "/t/acme/vms/"):
    page = new_page()
    login(page, live_url, "bob")
    page.route_web_socket(WS, relay)
    page.goto(f"{live_url}{path}")
    live_subscribed(page)
    return page


def vm_row(page, name: str):
    return page.locator(f'tr[data-live-kind="vm"][data-live-name="{name}"]')


def test_a_page_whose_connection_is_down_says_so_and_reconnect_now_brings_it_back_at_once(
    demo, make_host, tiny_image, live_url, new_page
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web", image="tiny", vcpus=1, memory_mib=256
    )
    relay = Relay()
    page = vm_page(new_page, live_url, relay)
    banner = page.get_by_test_id("live-banner")
    badge = vm_row(page, "web").locator("[data-live-field=phase]")
    expect(badge).to_have_text("Pending")
    expect(banner).to_be_hidden()

    relay.refusing = True
    relay.drop()
    expect(banner).to_be_visible(timeout=5000)
    expect(banner).to_contain_text("Live updates paused")
    expect(banner).to_have_attribute("role", "status")
    resource_publish(tenant=demo.acme, kind="vm", name="web", data={"phase": "Stopped"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live-banner-offline.png"))
    assert_accessible(page, "live-banner-offline")

    # Four reconnects refused: the page's next try is 6 s or more away.
    for _ in range(200):
        if len(relay.sockets) >= 5:
            break
        page.wait_for_timeout(100)
    assert len(relay.sockets) >= 5, len(relay.sockets)
    relay.refusing = False
    banner.get_by_role("button", name="Reconnect now").click()
    expect(badge).to_have_text("Stopped", timeout=3000)  # the state it missed
    expect(banner).to_be_hidden()
    assert len(relay.sockets) == 6


def test_a_row_the_page_cannot_check_stays_and_the_page_says_it_may_be_out_of_date(
    demo, make_host, tiny_image, live_url, new_page
):
    """VM "gone" is deleted while the page hears nothing; after the reconnect the page
    asks the API about it, and the API cannot be reached: the row stays as it was and
    the page says it may be out of date. The next try finds it gone."""
    make_host("node-a")
    for name in ("gone", "kept"):
        vm_services.vm_create(
            actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
        )
    relay = Relay()
    page = vm_page(new_page, live_url, relay)
    banner = page.get_by_test_id("live-banner")
    asked = []

    def unreachable(route):
        asked.append(route.request.url)
        route.abort("internetdisconnected")

    api = f"{live_url}/api/v1/tenants/acme/virtualmachines/gone/"
    page.route(api, unreachable)
    relay.cut = True
    vm = VirtualMachine.objects.get(name="gone")
    vm_services.vm_finalize_delete(vm, backend_for_host(vm.host))  # the delete task's end
    relay.cut = False
    relay.drop()

    expect(banner).to_contain_text("may be out of date", timeout=10_000)
    expect(banner.get_by_role("button", name="Reload")).to_be_visible()
    assert asked, "the page asked about the VM"
    expect(vm_row(page, "gone")).not_to_have_attribute("data-live-deleted", "1")
    page.screenshot(path=str(ARTIFACTS / "live-banner-stale.png"))

    page.unroute(api)
    expect(vm_row(page, "gone")).to_have_attribute("data-live-deleted", "1", timeout=10_000)
    expect(banner).to_be_hidden()
    expect(vm_row(page, "kept")).not_to_have_attribute("data-live-deleted", "1")


def test_an_event_table_whose_refetch_fails_says_so_and_fills_in_when_it_can(
    demo, live_url, new_page
):
    """An event is missed while the page's connection fails; the timeline fetches the
    page again after the reconnect and cannot: it says it may be out of date until a
    retry brings the missed row."""
    relay = Relay()
    page = vm_page(new_page, live_url, relay, "/t/acme/events/")
    banner = page.get_by_test_id("live-banner")
    rows = page.get_by_test_id("event-timeline").locator("tbody tr")
    expect(rows).to_have_count(0)
    fetched = []

    def unreachable(route):
        if route.request.resource_type == "fetch":
            fetched.append(route.request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route(f"{live_url}/t/acme/events/", unreachable)
    relay.cut = True
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
    page.wait_for_timeout(300)
    relay.cut = False
    relay.drop()

    expect(banner).to_contain_text("may be out of date", timeout=10_000)
    assert fetched
    expect(rows).to_have_count(0)
    page.unroute(f"{live_url}/t/acme/events/")
    expect(rows.first).to_contain_text("vm/web1", timeout=10_000)
    expect(banner).to_be_hidden()


def test_a_page_signed_out_elsewhere_says_so_and_offers_to_sign_in_again(demo, live_url, new_page):
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/")
    live_subscribed(page)
    banner = page.get_by_test_id("live-banner")
    expect(banner).to_be_hidden()

    other = page.context.new_page()  # another tab, same session
    other.goto(f"{live_url}/t/acme/")
    other.get_by_test_id("user-menu").click()
    other.get_by_role("button", name="Sign out").click()

    expect(banner).to_contain_text("You have been signed out", timeout=10_000)
    banner.get_by_role("button", name="Sign in again").click()
    expect(page.get_by_label("Username")).to_be_visible()
    assert "/login/" in page.url
