"""Live events in the browser: two people watch acme's timeline while things happen."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from monitoring.services import event_publish
from tests.conftest import ARTIFACTS, live_subscribed, login
from tests.e2e.axe import assert_accessible

pytestmark = pytest.mark.e2e


def open_timeline(new_page, live_url, username, **route):
    page = new_page()
    login(page, live_url, username)
    if route:
        page.route_web_socket(re.compile(r".*/ws/(\?.*)?$"), route["handler"])
    page.goto(f"{live_url}/t/acme/events/")
    expect(page.get_by_test_id("live-status")).to_contain_text("live")
    # "live" is the socket being open; what a test publishes next must come after the
    # server's answer to the subscribe, or the page rightly resyncs from the snapshot.
    live_subscribed(page)
    return page


def test_an_event_appears_on_both_timelines_within_two_seconds_without_reload(
    demo, live_url, new_page
):
    alice = open_timeline(new_page, live_url, "alice")
    carol = open_timeline(new_page, live_url, "carol")
    carol.evaluate("window.__loadedAt = performance.timeOrigin")
    for page in (alice, carol):
        expect(page.get_by_test_id("event-timeline").locator("tbody tr")).to_have_count(0)

    event_publish(
        tenant=demo.acme,
        kind="vm",
        name="web1",
        type="Warning",
        reason="FailedStart",
        message="Guest did not boot: no bootable device.",
    )
    # Warnings also pop a toast (for 8 s: looked for first, so that a slow machine's
    # checks of the rows below cannot outlast it).
    expect(carol.get_by_test_id("live-toast")).to_contain_text("FailedStart")
    for page in (alice, carol):
        row = page.get_by_test_id("event-timeline").locator("tbody tr").first
        expect(row).to_contain_text("FailedStart", timeout=2000)
        expect(row).to_contain_text("vm/web1")
        expect(row).to_contain_text("no bootable device")
        expect(row.locator("[data-field=count]")).to_be_hidden()  # seen once: no "×1"

    # A repeat folds: same row, count 2, no second row.
    event_publish(
        tenant=demo.acme,
        kind="vm",
        name="web1",
        type="Warning",
        reason="FailedStart",
        message="Guest did not boot: no bootable device.",
    )
    rows = carol.get_by_test_id("event-timeline").locator("tbody tr")
    expect(rows.first.locator("[data-field=count]")).to_have_text("×2", timeout=2000)
    expect(rows.first.locator("[data-field=count]")).to_be_visible()
    expect(rows).to_have_count(1)
    # Another tenant's event never shows up.
    event_publish(tenant=demo.globex, kind="vm", name="db", reason="Started", message="up")
    event_publish(tenant=demo.acme, kind="vm", name="web2", reason="Started", message="up")
    expect(rows.first).to_contain_text("vm/web2", timeout=2000)
    expect(rows).to_have_count(2)
    assert carol.evaluate("window.__loadedAt === performance.timeOrigin"), "page reloaded"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    carol.screenshot(path=str(ARTIFACTS / "events-live-carol.png"), full_page=True)
    assert_accessible(carol, "events-live-carol")


def test_events_missed_while_disconnected_arrive_after_the_reconnect(demo, live_url, new_page):
    """The page comes back subscribed "since" the seq it holds, and the server sends what
    it missed without the page asking (one round trip)."""
    sockets = []
    sent = []  # per socket, the frames the page sent on it

    def relay(ws):
        server = ws.connect_to_server()
        frames = []
        sent.append(frames)

        def forward(message):
            frames.append(json.loads(message))
            server.send(message)

        ws.on_message(forward)
        sockets.append(ws)

    carol = open_timeline(new_page, live_url, "carol", handler=relay)
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
    rows = carol.get_by_test_id("event-timeline").locator("tbody tr")
    expect(rows).to_have_count(1, timeout=2000)

    sockets[-1].close(code=4000, reason="network blip")  # the page's side drops
    event_publish(tenant=demo.acme, kind="vm", name="web2", reason="Stopped", message="down")
    expect(carol.get_by_test_id("live-status")).to_contain_text("offline")

    expect(rows.first).to_contain_text("vm/web2", timeout=5000)
    expect(rows).to_have_count(2)
    assert len(sockets) >= 2, "the page reconnected"
    back = sent[-1]
    [acme] = [frame for frame in back if frame.get("tenant") == "acme"]
    assert acme["type"] == "subscribe" and isinstance(acme.get("since"), int), back
    assert not [frame for frame in back if frame["type"] == "resync"], back


class LossyRelay:
    """A page's websocket routed through the test: the frames the page sends and those
    it is given are noted; with ``losing`` set, the next frame to the page is lost."""

    def __init__(self):
        self.sent: list[dict] = []
        self.received: list[dict] = []
        self.losing = False

    def __call__(self, ws) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda message: self.to_page(ws, message))
        ws.on_message(lambda message: self.to_server(server, message))

    def to_page(self, ws, message) -> None:
        if self.losing:
            self.losing = False
        else:
            self.received.append(json.loads(message))
            ws.send(message)

    def to_server(self, server, message) -> None:
        self.sent.append(json.loads(message))
        server.send(message)


def two_running_vm_rows(page, demo) -> dict:
    """Rows of VMs a and b added to the page, live; both published Running and shown.
    Their phase badges, by name."""
    from monitoring.services import resource_publish

    page.evaluate(
        """() => document.querySelector("main").insertAdjacentHTML("afterbegin",
        ["a", "b"].map((name) =>
          '<div data-testid="vm-' + name + '" data-live-kind="vm" data-live-name="' +
          name + '"><span class="badge" data-live-field="phase">Pending</span></div>'
        ).join(""))"""
    )
    for name in ("a", "b"):
        resource_publish(tenant=demo.acme, kind="vm", name=name, data={"phase": "Running"})
    badges = {n: page.get_by_test_id(f"vm-{n}").locator("[data-live-field=phase]") for n in "ab"}
    for badge in badges.values():
        expect(badge).to_have_text("Running", timeout=2000)
    return badges


def vm_phases(resync: dict, names: str) -> dict:
    """The phase each of the VMs ``names`` has in a resync frame (None: listed by name
    only); other tests' states may be kept in the tenant's, and are left out."""
    return {
        r["name"]: r.get("data", {}).get("phase")
        for r in resync["data"]["resources"]
        if r["kind"] == "vm" and r["name"] in names
    }


def test_after_a_reconnect_only_the_states_that_changed_come_whole_and_every_row_is_right(
    demo, live_url, new_page
):
    """Two VMs on the page, live; one stops while the page's connection is failing (its
    message never arrives) and the page reconnects. It gets the tenant's resources with
    only the stopped VM's state whole (the other by name: the page had it), shows that
    one stopped and keeps the other running."""
    from monitoring.services import resource_publish

    sockets, received = [], []  # per socket: the page's end, the frames it was given
    cut = []  # set: the connection fails, nothing more reaches the page

    def relay(ws):
        server = ws.connect_to_server()
        frames = []
        received.append(frames)

        def forward(message):
            if not cut:
                frames.append(json.loads(message))
                ws.send(message)

        server.on_message(forward)
        sockets.append(ws)

    bob = open_timeline(new_page, live_url, "bob", handler=relay)
    badges = two_running_vm_rows(bob, demo)

    cut.append(True)
    resource_publish(tenant=demo.acme, kind="vm", name="b", data={"phase": "Stopped"})
    expect(badges["b"]).to_have_text("Running")  # its message did not get through
    cut.clear()
    sockets[-1].close(code=4000, reason="network blip")

    expect(badges["b"]).to_have_text("Stopped", timeout=10000)
    expect(badges["a"]).to_have_text("Running")
    assert len(sockets) >= 2, "the page reconnected"
    [resync] = [f for f in received[-1] if f["type"] == "resync" and f["stream"] == "tenant.acme"]
    assert isinstance(resync.get("since"), int), resync
    assert vm_phases(resync, "ab") == {"a": None, "b": "Stopped"}


def test_after_a_gap_only_the_states_that_changed_come_whole_and_every_row_is_right(
    demo, live_url, new_page
):
    """One VM's message is lost on its way to the page while the socket stays open; the
    next message shows the gap and the page asks for a resync "since" the seq it held
    all of: the stopped VM's state comes whole, the other by name, both rows right."""
    from monitoring.services import resource_publish

    relay = LossyRelay()
    bob = open_timeline(new_page, live_url, "bob", handler=relay)
    badges = two_running_vm_rows(bob, demo)

    before = len(relay.sent), len(relay.received)
    relay.losing = True
    resource_publish(tenant=demo.acme, kind="vm", name="b", data={"phase": "Stopped"})
    for _ in range(100):  # the relay runs while the page is waited on
        if not relay.losing:
            break
        bob.wait_for_timeout(50)
    assert not relay.losing, "the message reached the relay"
    expect(badges["b"]).to_have_text("Running")  # it was lost
    resource_publish(tenant=demo.acme, kind="vm", name="c", data={"phase": "Pending"})

    expect(badges["b"]).to_have_text("Stopped", timeout=5000)
    expect(badges["a"]).to_have_text("Running")
    [asked] = [f for f in relay.sent[before[0] :] if f["type"] == "resync"]
    [resync] = [f for f in relay.received[before[1] :] if f["type"] == "resync"]
    assert asked["stream"] == resync["stream"] == "tenant.acme"
    assert resync["since"] == asked["since"], (asked, resync)
    assert vm_phases(resync, "abc") == {"a": None, "b": "Stopped", "c": "Pending"}


def test_a_page_behind_its_stream_at_its_first_subscribe_gets_only_what_changed_whole(
    demo, live_url, new_page
):
    """A VM changes after the page was rendered and before its socket subscribes: the
    page's first subscribe says the seq it was rendered at, and the resync that follows
    unasked holds that VM's state whole and the unchanged one by name only."""
    from monitoring.services import resource_publish

    for name in ("a", "b"):
        resource_publish(tenant=demo.acme, kind="vm", name=name, data={"phase": "Running"})
    relay = LossyRelay()
    changed = []

    def late(ws):
        if not changed:  # between the render and the first subscribe
            resource_publish(tenant=demo.acme, kind="vm", name="b", data={"phase": "Stopped"})
            changed.append(True)
        relay(ws)

    page = new_page()
    # The rows as rendered (Running, as published before the page), before live.js runs.
    page.add_init_script(
        """document.addEventListener("DOMContentLoaded", () =>
        document.querySelector("main").insertAdjacentHTML("afterbegin", ["a", "b"].map((n) =>
          '<div data-testid="vm-' + n + '" data-live-kind="vm" data-live-name="' + n +
          '"><span class="badge" data-live-field="phase">Running</span></div>').join("")))"""
    )
    login(page, live_url, "bob")
    page.route_web_socket(re.compile(r".*/ws/(\?.*)?$"), late)
    page.goto(f"{live_url}/t/acme/events/")
    rendered = json.loads(page.locator("#isotope-live-baseline").text_content())["tenant.acme"]

    badge = {n: page.get_by_test_id(f"vm-{n}").locator("[data-live-field=phase]") for n in "ab"}
    expect(badge["b"]).to_have_text("Stopped", timeout=5000)
    expect(badge["a"]).to_have_text("Running")
    [first] = [f for f in relay.sent if f["type"] == "subscribe" and f.get("tenant") == "acme"]
    assert first["since"] == rendered, first
    assert not [f for f in relay.sent if f["type"] == "resync"], "the server sent it unasked"
    [resync] = [f for f in relay.received if f["type"] == "resync"]
    assert resync["since"] == rendered
    assert vm_phases(resync, "ab") == {"a": None, "b": "Stopped"}


def test_filters_apply_to_live_events(demo, live_url, new_page):
    carol = new_page()
    login(carol, live_url, "carol")
    carol.goto(f"{live_url}/t/acme/events/?type=Warning")
    expect(carol.get_by_test_id("live-status")).to_contain_text("live")
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
    event_publish(
        tenant=demo.acme, kind="vm", name="web1", type="Warning", reason="Failed", message="x"
    )
    rows = carol.get_by_test_id("event-timeline").locator("tbody tr")
    expect(rows.first).to_contain_text("Failed", timeout=2000)
    expect(rows).to_have_count(1)


def test_resource_states_patch_phase_badges_and_action_buttons_in_place(demo, live_url, new_page):
    from monitoring.services import resource_publish

    bob = open_timeline(new_page, live_url, "bob")
    # What a VM row declares (compute's templates use the same attributes).
    bob.evaluate(
        """() => document.querySelector("main").insertAdjacentHTML("afterbegin",
        '<div data-testid="vm-web1" data-live-kind="vm" data-live-name="web1">' +
        '<span class="badge text-bg-info" data-live-field="phase">Starting</span>' +
        '<span data-live-field="message"></span>' +
        '<button data-live-action="stop">Stop</button>' +
        '<button data-live-action="start">Start</button></div>')"""
    )
    resource_publish(
        tenant=demo.acme,
        kind="vm",
        name="web1",
        data={"phase": "Running", "message": "", "actions": ["stop"]},
    )
    vm = bob.get_by_test_id("vm-web1")
    badge = vm.locator("[data-live-field=phase]")
    expect(badge).to_have_text("Running", timeout=2000)
    expect(badge).to_have_class(re.compile(r"text-bg-success"))
    expect(vm.get_by_role("button", name="Stop")).to_be_visible()
    expect(vm.get_by_role("button", name="Start")).to_be_hidden()

    resource_publish(
        tenant=demo.acme,
        kind="vm",
        name="web1",
        data={"phase": "Failed", "message": "Guest crashed.", "actions": ["start"]},
    )
    expect(badge).to_have_text("Failed", timeout=2000)
    expect(badge).to_have_class(re.compile(r"text-bg-danger"))
    expect(vm.locator("[data-live-field=message]")).to_have_text("Guest crashed.")
    expect(vm.get_by_role("button", name="Start")).to_be_visible()
    expect(vm.get_by_role("button", name="Stop")).to_be_hidden()


def test_a_burst_arrives_in_batch_frames_and_the_page_shows_every_event_and_the_last_phase(
    demo, live_url, new_page
):
    from monitoring import live
    from monitoring.choices import LiveMessageType
    from monitoring.groups import object_group, tenant_group

    frames = []

    def relay(ws):
        server = ws.connect_to_server()

        def down(message):
            frames.append(message)
            ws.send(message)

        server.on_message(down)

    carol = open_timeline(new_page, live_url, "carol", handler=relay)
    carol.evaluate(
        """() => document.querySelector("main").insertAdjacentHTML("afterbegin",
        '<div data-testid="vm-burst" data-live-kind="vm" data-live-name="burst">' +
        '<span class="badge text-bg-info" data-live-field="phase">Pending</span></div>')"""
    )
    carol.evaluate(
        "() => { window.__resyncs = 0;"
        " document.addEventListener('isotope:resync', () => window.__resyncs++); }"
    )
    # (A VM no other test publishes: a state another test left in the resync snapshot
    # would otherwise reach the page with its subscription, after the burst.)
    # 30 phase changes in one go (what a host reconnecting after a blip sends), then
    # 12 events one after another: the page gets them coalesced and applies them all.
    groups = [tenant_group("acme"), object_group("acme", "vm", "burst")]
    phases = [("Starting" if i % 2 else "Stopping") for i in range(29)] + ["Running"]
    live.broadcast_many(
        [
            (
                groups,
                LiveMessageType.RESOURCE,
                {"tenant": "acme", "kind": "vm", "name": "burst", "state": {"phase": phase}},
            )
            for phase in phases
        ]
    )
    for i in range(12):
        event_publish(tenant=demo.acme, kind="vm", name=f"burst{i}", reason="Started", message="up")
    badge = carol.get_by_test_id("vm-burst").locator("[data-live-field=phase]")
    expect(badge).to_have_text("Running", timeout=5000)
    rows = carol.get_by_test_id("event-timeline").locator("tbody tr")
    expect(rows).to_have_count(12, timeout=5000)
    expect(rows.first).to_contain_text("vm/burst11")
    assert any(json.loads(f).get("type") == "batch" for f in frames), "no batch frame"
    assert carol.evaluate("window.__resyncs") == 0  # no gap seen: seqs contiguous


def test_a_vm_state_lost_on_its_way_to_the_web_process_still_reaches_the_open_page(
    demo, make_host, tiny_image, live_url, new_page, settings
):
    """Redis pub/sub delivers at most once. Here the web process's subscription drops a
    VM's new state (its failpoint, as when its Redis connection breaks with the message
    on it) and nothing follows that would show the page a gap: the process finds the
    loss at its next checks and the page shows the state all the same, without a
    reload."""
    from compute.models import VirtualMachine
    from compute.services import vms as vm_services
    from monitoring.services import resource_publish
    from portal.failpoints import armed, hits
    from tests.conftest import wait_for

    settings.ISOTOPE_LIVE_CHECK_SECONDS = 0.5
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.alice, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )

    def show(phase: str) -> None:
        VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase)
        state = vm_services.vm_state(VirtualMachine.objects.get(pk=vm.pk))
        resource_publish(tenant=demo.acme, kind="vm", name="web1", data=state)

    bob = new_page()
    login(bob, live_url, "bob")
    bob.goto(f"{live_url}/t/acme/vms/")
    live_subscribed(bob)
    bob.evaluate("window.__samePage = true")
    phase = bob.locator('tr[data-live-kind="vm"][data-live-name="web1"]').get_by_test_id("phase")
    show("Running")
    expect(phase).to_have_text("Running", timeout=5000)

    with armed("live.fanout.received", "raise"):
        show("Stopped")
        wait_for(
            lambda: hits("live.fanout.received"),
            timeout=10,
            message="the web process did not drop the state",
        )
    expect(phase).to_have_text("Stopped", timeout=15_000)
    assert bob.evaluate("window.__samePage === true"), "the page was reloaded"


def test_a_state_older_than_the_one_shown_is_not_shown_over_it(demo, live_url, new_page):
    """Two writers of one VM each send its state after their own commit, so the states
    can arrive in the other order than they were written (a readiness probe's write and
    the start's). The page keeps the newer one, as the resync snapshot does; a VM made
    again under the same name (a new uid) starts its versions afresh."""
    from monitoring.services import resource_publish

    bob = open_timeline(new_page, live_url, "bob")
    bob.evaluate(
        """() => document.querySelector("main").insertAdjacentHTML("afterbegin",
        '<div data-testid="vm-order" data-live-kind="vm" data-live-name="order">' +
        '<span class="badge text-bg-info" data-live-field="phase">Pending</span></div>')"""
    )
    badge = bob.get_by_test_id("vm-order").locator("[data-live-field=phase]")
    bob.evaluate(
        """() => { window.__phases = [];
        document.addEventListener('isotope:resource', (e) => {
          if (e.detail.data.name === 'order') window.__phases.push(e.detail.data.state.phase);
        }); }"""
    )

    def publish(phase: str, version: int, uid: str = "11111111-1111-4111-8111-111111111111"):
        state = {"phase": phase, "uid": uid, "resourceVersion": str(version)}
        resource_publish(tenant=demo.acme, kind="vm", name="order", data=state)

    publish("Running", 7)
    expect(badge).to_have_text("Running", timeout=2000)
    publish("Starting", 6)  # written before Running, arrived after it
    publish("Running", 7)  # the same state again: shown (nothing older)
    publish("Stopping", 8)
    expect(badge).to_have_text("Stopping", timeout=2000)
    publish("Starting", 5)
    publish("Paused", 3, uid="22222222-2222-4222-8222-222222222222")  # made again
    expect(badge).to_have_text("Paused", timeout=2000)
    # What the page applied, in order: never the two older states.
    assert bob.evaluate("window.__phases") == ["Running", "Running", "Stopping", "Paused"]
