"""The in-page console in Chromium: bob types into a real guest, carol only watches."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from compute.services import vms as vm_services
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.test_console_proxy import guest, node1, serial  # noqa: F401 - fixtures
from tests.conftest import ARTIFACTS, first_held, login, requests_held, wait_for
from tests.e2e.axe import assert_accessible

LIT_PIXELS = """() => {
  const canvas = document.querySelector('[data-console-screen] canvas');
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 150) lit++;
  return lit;
}"""


# The tab hidden (true) or seen again (false), as a browser tells the page.
TAB_HIDDEN = """hidden => {
  const state = hidden ? 'hidden' : 'visible';
  Object.defineProperty(document, 'visibilityState', { value: state, configurable: true });
  Object.defineProperty(document, 'hidden', { value: hidden, configurable: true });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def type_like_a_person(page, command: str) -> None:
    """Type ``command`` into the focused console and press Enter, holding Shift for
    capitals and ``>`` as a person on a US keyboard does (noVNC sends physical keys)."""
    for ch in command:
        if ch.isupper():
            page.keyboard.press(f"Shift+Key{ch}")
        elif ch == ">":
            page.keyboard.press("Shift+Period")
        else:
            page.keyboard.type(ch)
        page.wait_for_timeout(30)
    page.keyboard.press("Enter")


def open_console(page, live_url: str, user: str, vm) -> None:
    login(page, live_url, user)
    page.goto(f"{live_url}/t/acme/vms/{vm.name}/console/")
    expect(page.get_by_test_id("console-state")).to_contain_text("Connected", timeout=20_000)
    # The shell is on the screen: the canvas has lit (text) pixels.
    page.wait_for_function(f"() => ({LIT_PIXELS})() > 200", timeout=20_000)


@pytest.mark.e2e
@pytest.mark.qemu
def test_bob_types_into_the_console_and_carol_only_watches(guest, live_url, new_page):  # noqa: F811
    bob = new_page()
    open_console(bob, live_url, "bob", guest)
    assert bob.evaluate(LIT_PIXELS) > 200
    bob.get_by_test_id("console-screen").locator("canvas").click()
    type_like_a_person(bob, "echo isotope-console-ok > /dev/ttyS0")
    wait_for(lambda: "isotope-console-ok" in serial(guest), 30, message="bob's line never ran")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "console-bob.png"), full_page=True)
    assert_accessible(bob, "console-bob")

    # Disconnect while connecting (the ticket still on its way): it stays disconnected,
    # no session opens when the ticket arrives.
    console = bob.get_by_test_id("console")
    state = bob.get_by_test_id("console-state")
    disconnect = console.locator("[data-console-action=disconnect]")
    disconnect.click()
    expect(state).to_have_text("Not connected")
    ticket_url = live_url + console.get_attribute("data-ticket-url")
    held = requests_held(bob, ticket_url)
    bob.get_by_test_id("console-connect").click()
    expect(state).to_have_text("Connecting…")
    ticket = first_held(bob, held)
    disconnect.click()
    expect(state).to_have_text("Not connected")
    ticket.continue_()
    bob.unroute(ticket_url)
    bob.wait_for_timeout(1500)  # the ticket's answer, and a session if one were opened
    expect(state).to_have_text("Not connected")
    expect(bob.get_by_test_id("console-screen").locator("canvas")).to_have_count(0)
    bob.get_by_test_id("console-connect").click()
    expect(state).to_have_text("Connected", timeout=20_000)
    bob.wait_for_function(f"() => ({LIT_PIXELS})() > 200", timeout=20_000)

    carol = new_page()
    open_console(carol, live_url, "carol", guest)
    expect(carol.get_by_test_id("console-view-only")).to_be_visible()
    expect(carol.get_by_test_id("console-state")).to_have_text("Connected · view only")
    expect(carol.get_by_role("button", name="Ctrl-Alt-Del")).to_have_count(0)
    carol_marker = f"carol-{secrets.token_hex(3)}"
    carol.get_by_test_id("console-screen").locator("canvas").click()
    type_like_a_person(carol, f"echo {carol_marker} > /dev/ttyS0")
    carol.screenshot(path=str(ARTIFACTS / "console-carol.png"), full_page=True)
    assert_accessible(carol, "console-carol")

    # Bob's next line runs after carol's would have: hers never reached the guest.
    bob.get_by_test_id("console-screen").locator("canvas").click()
    type_like_a_person(bob, "echo bob-after-carol > /dev/ttyS0")
    wait_for(lambda: "bob-after-carol" in serial(guest), 30)
    assert carol_marker not in serial(guest)

    # Stopping the VM closes both sessions with a clear message.
    vm_services.vm_action(actor=guest.created_by, vm=guest, action="stop")
    for page in (bob, carol):
        expect(page.get_by_test_id("console-message")).to_contain_text("is Stopp", timeout=30_000)
        expect(page.get_by_test_id("console-state")).not_to_have_text(re.compile("^Connected"))
    wait_phase(guest, "Stopped", timeout=60)
    expect(bob.get_by_test_id("console-message")).to_contain_text("is Stopped", timeout=10_000)
    expect(bob.get_by_test_id("console-connect")).to_be_disabled()
    bob.screenshot(path=str(ARTIFACTS / "console-stopped.png"), full_page=True)
    assert_accessible(bob, "console-stopped")


@pytest.mark.e2e
def test_a_vm_on_a_host_without_console_says_so_on_its_page_and_panel(
    demo, make_host, tiny_image, celery_worker, live_url, new_page
):
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    wait_phase(vm, "Running", timeout=20)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/console/")
    expect(page.get_by_test_id("console-message")).to_contain_text("no graphical console")
    expect(page.get_by_test_id("console-connect")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "console-no-console.png"), full_page=True)
    assert_accessible(page, "console-no-console")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    panel = page.get_by_test_id("console")
    expect(panel.get_by_test_id("console-message")).to_contain_text("no graphical console")
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "vm-detail-console-panel.png"), full_page=True)
    assert_accessible(page, "vm-detail-console-panel")


@pytest.mark.e2e
@pytest.mark.qemu
def test_the_serial_log_asks_one_request_at_a_time_and_nothing_while_the_tab_is_hidden(
    guest,  # noqa: F811
    live_url,
    new_page,
):
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/{guest.name}/console/")
    log = page.get_by_test_id("serial-log")
    url = live_url + log.get_attribute("data-url")
    held = requests_held(page, url)
    log.locator("summary").click()
    first = first_held(page, held)
    page.wait_for_timeout(7000)  # two polls' time
    assert len(held) == 1, "a second request while the first was unanswered"
    first.abort()  # a failed poll: the next one comes all the same
    page.wait_for_timeout(4000)
    assert len(held) == 2, "no poll after a failed one"
    held[1].continue_()
    page.unroute(url)
    expect(log.locator("[data-serial-text]")).to_contain_text(f"{guest.name}:/# ")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-serial-log.png"), full_page=True)
    assert_accessible(page, "console-serial-log")

    page.evaluate(TAB_HIDDEN, True)
    asked = []  # counted from the moment the tab is hidden
    page.on("request", lambda request: request.url == url and asked.append(request))
    page.wait_for_timeout(7000)
    assert asked == [], "the serial log was fetched while the tab was hidden"
    with page.expect_request(url, timeout=1000):
        page.evaluate(TAB_HIDDEN, False)  # seen again: fetched at once, not at the next tick
    with page.expect_request(url, timeout=6000):
        pass  # and every 3 s again
