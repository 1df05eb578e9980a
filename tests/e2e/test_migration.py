"""Browser: a tenant admin live-migrates a VM and watches the progress bar advance
(real QEMU guests on node1 and node2; migration tier)."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest
from playwright.sync_api import expect

from compute.backends.libvirt.backend import CONSOLE_PORT_REASON
from compute.models import Host, Migration, VirtualMachine
from tests.compute.test_console_ports import taken_port
from tests.compute.test_migration_qemu import boot, nodes, policy, worker  # noqa: F401
from tests.conftest import (
    ARTIFACTS,
    first_held,
    live_subscribed,
    login,
    requests_held,
    wait_for,
)
from tests.e2e.axe import assert_accessible

pytestmark = [pytest.mark.e2e, pytest.mark.qemu, pytest.mark.migration]


@pytest.mark.usefixtures("nodes", "worker")
def test_alice_migrates_a_vm_and_the_progress_bar_advances_live(demo, live_url, new_page):
    policy(bandwidth_mib=4)
    (vm,) = boot(demo)
    page = new_page()
    login(page, live_url, "alice")
    page.goto(f"{live_url}/t/acme/vms/{vm.name}/")
    panel = page.get_by_test_id("migration-panel")
    page.evaluate("window.__sameDocument = true")
    panel.get_by_role("button", name="Migrate").click()
    expect(panel.get_by_test_id("migrate-note")).to_have_text(
        f"Live migration of {vm.name} requested.", timeout=20_000
    )
    bar = panel.get_by_test_id("migration-progress")
    bar.wait_for(state="visible", timeout=20_000)
    seen = []

    def advanced():
        value = float(bar.get_attribute("aria-valuenow") or 0)
        if not seen or value != seen[-1]:
            seen.append(value)
        return len([v for v in seen if v > 0]) >= 3

    wait_for(advanced, 60, interval=0.1, message=f"the bar did not advance: {seen}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "migration-progress.png"), full_page=True)
    assert_accessible(page, "migration-progress")
    assert seen == sorted(seen), seen
    wait_for(lambda: Migration.objects.filter(phase="Succeeded").exists(), 120)
    history = panel.get_by_test_id("migration-history")
    history.get_by_text("Succeeded").wait_for(timeout=15_000)
    # Swapped in from the server: the page, its console and its live stream stayed.
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    expect(panel.get_by_test_id("migration-progress")).to_be_hidden()
    expect(panel.get_by_role("button", name="Migrate")).to_be_visible(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "migration-done.png"), full_page=True)
    assert_accessible(page, "migration-done")

    staff = new_page()
    login(staff, live_url, "admin")
    staff.goto(f"{live_url}/t/acme/vms/{vm.name}/")
    assert staff.get_by_test_id("vm-host").inner_text().strip() == "node2"
    assert "node1 → node2" in staff.get_by_test_id("migration-hosts").first.inner_text()
    staff.goto(f"{live_url}/staff/migrations/")
    staff.screenshot(path=str(ARTIFACTS / "migration-staff.png"), full_page=True)
    assert_accessible(staff, "migration-staff")
    assert VirtualMachine.objects.get(pk=vm.pk).host.name == "node2"


@pytest.mark.usefixtures("nodes", "worker")
def test_the_migrate_button_appears_when_a_vm_turns_running_without_a_reload(
    demo, live_url, new_page
):
    import secrets

    from compute.models import Host
    from compute.services import vms as vm_services

    Host.objects.filter(name="node2").update(maintenance=True)  # place it on node1
    vm = vm_services.vm_create(
        actor=demo.alice,
        tenant=demo.acme,
        name=f"mg-{secrets.token_hex(3)}",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        start=False,
    )
    Host.objects.filter(name="node2").update(maintenance=False)
    wait_for(lambda: VirtualMachine.objects.get(pk=vm.pk).phase == "Stopped", 90)
    page = new_page()
    login(page, live_url, "alice")
    page.goto(f"{live_url}/t/acme/vms/{vm.name}/")
    panel = page.get_by_test_id("migration-panel")
    migrate = panel.get_by_role("button", name="Migrate")
    expect(migrate).to_be_hidden()
    expect(panel.get_by_test_id("migrate-idle")).to_be_visible()
    page.evaluate("window.__sameDocument = true")
    live_subscribed(page)

    vm_services.vm_action(actor=demo.alice, vm=vm, action="start")
    expect(migrate).to_be_visible(timeout=90_000)
    expect(panel.get_by_test_id("migrate-idle")).to_be_hidden()
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "migration-panel-running.png"))
    assert_accessible(page, "migration-panel-running")
    # And it goes again while the VM is not running.
    vm_services.vm_action(
        actor=demo.alice, vm=VirtualMachine.objects.get(pk=vm.pk), action="force-stop"
    )
    expect(migrate).to_be_hidden(timeout=60_000)
    # The force-stop's task ends before the test does: a task still holding the VM's row
    # lock deadlocked the database flush between tests (and the next test's setup failed).
    wait_for(lambda: VirtualMachine.objects.get(pk=vm.pk).phase == "Stopped", 90)


@pytest.mark.usefixtures("nodes", "worker")
def test_a_failed_migration_reads_plainly_for_the_tenant_and_in_detail_for_staff(
    demo, live_url, new_page
):
    """node2 cannot give the guest a console port (its only one is taken): the tenant
    reads why in plain words, platform staff also see QEMU's own."""
    policy(bandwidth_mib=64)
    (vm,) = boot(demo)
    plain = f"{CONSOLE_PORT_REASON}."
    page = new_page()
    login(page, live_url, "alice")
    page.goto(f"{live_url}/t/acme/vms/{vm.name}/")
    panel = page.get_by_test_id("migration-panel")
    with taken_port() as port:
        Host.objects.filter(name="node2").update(vnc_port_min=port, vnc_port_max=port)
        panel.get_by_role("button", name="Migrate").click()
        wait_for(lambda: Migration.objects.filter(phase="Failed").exists(), 120)
    migration = Migration.objects.get()
    assert migration.reason == plain
    assert "Address already in use" in migration.detail or "available port" in migration.detail

    page.reload()
    message = page.get_by_test_id("vm-message")
    assert message.inner_text().strip() == f"Live migration failed: {plain}"
    history = page.get_by_test_id("migration-history")
    assert plain in history.inner_text()
    assert page.get_by_test_id("vm-detail-staff").count() == 0
    assert page.get_by_test_id("migration-detail-staff").count() == 0
    body = page.content()
    for raw in ("Address already in use", "available port", "Failed to find", "-vnc "):
        assert raw not in body, raw
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "migration-failed-tenant.png"), full_page=True)
    assert_accessible(page, "migration-failed-tenant")

    staff = new_page()
    login(staff, live_url, "admin")
    staff.goto(f"{live_url}/t/acme/vms/{vm.name}/")
    detail = staff.get_by_test_id("vm-detail-staff")
    assert str(port) in detail.inner_text() and migration.detail in detail.inner_text()
    assert migration.detail in staff.get_by_test_id("migration-detail-staff").inner_text()
    staff.screenshot(path=str(ARTIFACTS / "migration-failed-staff.png"), full_page=True)
    assert_accessible(staff, "migration-failed-staff")
    assert VirtualMachine.objects.get(pk=vm.pk).host.name == "node1"


@pytest.mark.usefixtures("nodes", "worker")
def test_a_migration_that_fails_before_its_request_is_answered_leaves_the_migrate_button(
    demo, live_url, new_page
):
    """The server takes the Migrate request and the migration fails at once (node2 has
    no console port for the guest); the answer reaches the page only after the failure
    did, as on a slow network: the panel keeps offering Migrate."""
    policy(bandwidth_mib=64)
    (vm,) = boot(demo)
    page = new_page()
    login(page, live_url, "alice")
    page.goto(f"{live_url}/t/acme/vms/{vm.name}/")
    live_subscribed(page)
    panel = page.get_by_test_id("migration-panel")
    migrate = panel.get_by_role("button", name="Migrate")
    history = panel.get_by_test_id("migration-history")
    held = requests_held(page, f"{live_url}/t/acme/vms/{vm.name}/migrate/", "POST")
    with taken_port() as port:
        Host.objects.filter(name="node2").update(vnc_port_min=port, vnc_port_max=port)
        migrate.click()
        request = first_held(page, held)
        answer = request.fetch()  # the server has it; the page waits for its answer
        assert answer.status == 202, answer.text()
        expect(history).to_contain_text(CONSOLE_PORT_REASON, timeout=120_000)
    expect(history.get_by_text("Failed")).to_be_visible()
    expect(panel.get_by_test_id("migration-progress")).to_be_hidden()
    request.fulfill(response=answer)
    # Enabled again: the page has read the answer (the button hidden or not).
    expect(panel.locator("[data-action=migrate]")).to_be_enabled()
    expect(migrate).to_be_visible()
    expect(panel.get_by_test_id("migrate-note")).to_be_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "migration-failed-before-answer.png"), full_page=True)
    assert Migration.objects.get().phase == "Failed"


@pytest.mark.usefixtures("nodes", "worker")
def test_the_panel_says_the_page_may_be_out_of_date_when_it_cannot_fetch_the_history(
    demo, live_url, new_page
):
    """After a migration ends the panel fetches the page for its history: a failed fetch
    is tried again after 1, 2 and 4 s, then the panel says so; a fetch that fails once
    and then works updates the history with nothing to say."""
    policy(bandwidth_mib=64)
    (vm,) = boot(demo)
    page = new_page()
    login(page, live_url, "alice")
    url = f"{live_url}/t/acme/vms/{vm.name}/"
    page.goto(url)
    live_subscribed(page)
    panel = page.get_by_test_id("migration-panel")
    migrate = panel.get_by_role("button", name="Migrate")
    history = panel.get_by_test_id("migration-history")
    note = panel.get_by_test_id("migrate-note")
    refused = []
    page.route(url, lambda route: refused.append(time.monotonic()) or route.abort())
    with taken_port() as port:
        Host.objects.filter(name="node2").update(vnc_port_min=port, vnc_port_max=port)
        migrate.click()
        expect(panel.locator("[data-m-field=phase]")).to_have_text("Failed", timeout=120_000)
        expect(note).to_have_text(
            "This page may be out of date: the migration history and the VM's host could"
            " not be loaded. Reload the page.",
            timeout=15_000,
        )
        assert len(refused) == 4, refused
        waits = [later - earlier for earlier, later in pairwise(refused)]
        assert all(e - 0.1 <= w < e + 2 for e, w in zip([1, 2, 4], waits, strict=True)), waits
        expect(history).to_contain_text("No migrations yet.")
        page.screenshot(path=str(ARTIFACTS / "migration-history-stale.png"), full_page=True)
        assert_accessible(page, "migration-history-stale")

        # A fetch that fails once: the retry brings the history, the note has gone.
        page.unroute(url)
        refused.clear()

        def refuse_once(route) -> None:
            if refused:
                route.continue_()
            else:
                refused.append(time.monotonic())
                route.abort()

        page.route(url, refuse_once)
        migrate.click()
        expect(history.locator("tr", has_text="Failed")).to_have_count(2, timeout=120_000)
    assert len(refused) == 1
    expect(note).to_be_hidden()
    expect(history).not_to_contain_text("No migrations yet.")
