"""Event tables in the browser: the timeline's layout with many events, and the
"Recent events" of a VM's and a workload's page following the live stream alike."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.services import vms as vm_services
from monitoring.services import event_publish
from tests.conftest import ARTIFACTS, live_subscribed, login

pytestmark = pytest.mark.e2e

MESSAGES = [
    "Accepted: 1 vCPU, 512 MiB, image tiny.",
    "Phase is now Running.",
    "Stopping requested by bob.",
    "The guest stopped outside the portal (shutdown); restart policy OnFailure: leaving it "
    "stopped.",
    "Quota exceeded for cpu: requested 8, 2 left of 20; memory: requested 16384 MiB, "
    "1024 MiB left of 40960 MiB.",
    'Back-off pulling image "registry.example.com/team/a-rather-long-image-name:2024.11.30-'
    'build.4711": ErrImagePull: rpc error: code = Unknown desc = failed to pull and unpack '
    "image: failed to resolve reference: unexpected status from HEAD request: 401 "
    "Unauthorized. Check the image name and the pull secret of the namespace.",
]


REASONS = ["Scheduled", "Running", "Stopping", "StoppedOutsidePortal", "QuotaExceeded", "BackOff"]


def test_fifty_events_fit_a_readable_page_and_long_messages_expand(demo, live_url, new_page, axe):
    for i in range(50):
        event_publish(
            tenant=demo.acme,
            kind="vm" if i % 3 else "workload",
            name=f"web-{i}",
            type="Warning" if i % 7 == 0 else "Normal",
            reason=REASONS[i % 6],
            message=MESSAGES[i % 6],
        )
    page = new_page()
    login(page, live_url, "alice")
    page.goto(f"{live_url}/t/acme/events/")
    table = page.get_by_test_id("event-timeline")
    expect(table.locator("tbody tr")).to_have_count(50)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "events-50.png"), full_page=True)
    axe(page, "events-50")

    # The message column gets most of the width; the table fits the card (no sideways
    # scrolling) and 50 rows stay a page a person scrolls, not seven screens.
    share = page.evaluate(
        """() => {
        const t = document.getElementById('event-timeline');
        const cell = t.querySelector('tbody td.iso-event-message');
        return cell.getBoundingClientRect().width / t.getBoundingClientRect().width; }"""
    )
    assert share >= 0.4, f"the message column has {share:.0%} of the table"
    overflow = page.evaluate(
        """() => { const box = document.querySelector('#event-timeline').parentElement;
        return box.scrollWidth - box.clientWidth; }"""
    )
    assert overflow <= 1, f"the table is {overflow}px wider than its card"
    height = page.evaluate("() => document.documentElement.scrollHeight")
    assert height <= 3600, f"50 events make a {height}px page"

    # A long message shows two lines; its full text is on hover and a click expands it.
    long_row = table.locator("tbody tr", has_text="BackOff").first
    message = long_row.locator("[data-field=message]")
    assert message.get_attribute("title") == MESSAGES[5]
    collapsed = message.bounding_box()["height"]
    line = float(message.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)"))
    assert collapsed <= 2 * line + 1, (collapsed, line)
    expect(message).to_have_attribute("aria-expanded", "false")
    message.click()
    expect(message).to_have_attribute("aria-expanded", "true")
    assert message.bounding_box()["height"] > collapsed
    long_row.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "events-expanded.png"))
    axe(page, "events-expanded")
    message.press("Enter")
    expect(message).to_have_attribute("aria-expanded", "false")
    # A short message is not a button.
    short = table.locator("tbody tr", has_text="Phase is now Running.").first
    assert short.locator("[data-field=message]").get_attribute("role") is None


def test_a_vm_page_s_recent_events_update_live_like_a_workload_page_s(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="web-1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        start=False,
    )
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    page.evaluate("window.__sameDocument = true")
    table = page.get_by_test_id("vm-events")
    expect(table.locator("tbody tr")).to_have_count(1)  # Scheduled, from vm_create
    live_subscribed(page)

    event_publish(
        tenant=demo.acme,
        kind="vm",
        name="web-1",
        type="Warning",
        reason="FailedStart",
        message="Guest did not boot: no bootable device.",
    )
    event_publish(tenant=demo.acme, kind="vm", name="web-10", reason="Started", message="other")
    event_publish(tenant=demo.acme, kind="workload", name="web-1", reason="Scaled", message="x")
    rows = table.locator("tbody tr")
    expect(rows.first).to_contain_text("FailedStart", timeout=3000)
    expect(rows.first).to_contain_text("no bootable device")
    expect(rows).to_have_count(2)  # another VM's and a workload of the same name are not its
    expect(rows.first.locator("[data-field=count]")).to_be_hidden()

    # A repeat folds into its row, counted.
    event_publish(
        tenant=demo.acme,
        kind="vm",
        name="web-1",
        type="Warning",
        reason="FailedStart",
        message="Guest did not boot: no bootable device.",
    )
    expect(rows.first.locator("[data-field=count]")).to_have_text("×2", timeout=3000)
    expect(rows).to_have_count(2)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    table.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "vm-detail-events-live.png"), full_page=True)
    axe(page, "vm-detail-events-live")


def test_a_vm_page_without_events_loses_its_empty_note_when_the_first_arrives(
    demo, make_host, tiny_image, live_url, new_page
):
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="quiet",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        start=False,
    )
    from monitoring.models import Event

    Event.objects.filter(name=vm.name).delete()
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/quiet/")
    live_subscribed(page)
    card = page.get_by_test_id("vm-events").locator("xpath=ancestor::div[contains(@class,'card')]")
    expect(card.get_by_text("No events for this VM yet.")).to_be_visible()
    event_publish(tenant=demo.acme, kind="vm", name="quiet", reason="Started", message="up")
    expect(page.get_by_test_id("vm-events").locator("tbody tr")).to_have_count(1, timeout=3000)
    expect(card.get_by_text("No events for this VM yet.")).to_be_hidden()
