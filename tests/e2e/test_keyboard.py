"""Keyboard only: alice creates a VM, connects its console and starts a live migration
without touching the mouse, and the live region reads the phase changes out (real QEMU
guests on node1 and node2; migration tier)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.models import Host, Migration, VirtualMachine
from tests.compute.services.test_vm_lifecycle import wait_ready
from tests.compute.test_migration_qemu import nodes, policy, worker  # noqa: F401
from tests.conftest import ARTIFACTS, GUEST_BOOT_TIMEOUT, PASSWORD, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.qemu, pytest.mark.migration]


def tab_to(page, target, limit: int = 80) -> None:
    """Press Tab until ``target`` has the keyboard focus, as a keyboard user does."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            # What has the focus must show it (WCAG 2.4.7).
            outline = target.evaluate(
                "el => { const s = getComputedStyle(el);"
                " return s.outlineStyle !== 'none' || s.boxShadow !== 'none'; }"
            )
            assert outline, f"no visible focus on {target}"
            return
    pytest.fail(f"{target} never got the focus after {limit} Tab presses")


@pytest.mark.usefixtures("nodes", "worker")
def test_alice_creates_a_vm_opens_its_console_and_migrates_it_with_the_keyboard_only(
    demo, live_url, new_page, axe
):
    policy(bandwidth_mib=4)
    Host.objects.filter(name="node2").update(maintenance=True)  # the VM starts on node1
    page = new_page()
    page.goto(f"{live_url}/login/")
    tab_to(page, page.get_by_label("Username"))
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_url}/")

    page.goto(f"{live_url}/t/acme/vms/")
    tab_to(page, page.get_by_role("link", name="Create VM").first)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_url}/t/acme/vms/new/")
    axe(page)
    tab_to(page, page.get_by_label("Name"))
    page.keyboard.type("kb-1")
    tab_to(page, page.get_by_label("Custom"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_label("vCPUs", exact=True))
    page.keyboard.press("Control+A")
    page.keyboard.type("1")
    tab_to(page, page.get_by_label("Memory (MiB)"))
    page.keyboard.press("Control+A")
    page.keyboard.type("256")
    tab_to(page, page.get_by_label("Disk (GiB)"))
    page.keyboard.press("Control+A")
    page.keyboard.type("0")
    tab_to(page, page.get_by_role("button", name="Create VM"))
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_url}/t/acme/vms/kb-1/")
    vm = VirtualMachine.objects.get(name="kb-1")
    assert (vm.vcpus, vm.memory_mib) == (1, 256)

    # The phase changes are read out as they arrive, no reload.
    announcer = page.get_by_test_id("announcer")
    expect(announcer).to_have_text("VM kb-1 is now Running", timeout=GUEST_BOOT_TIMEOUT * 1000)
    wait_ready(vm, timeout=GUEST_BOOT_TIMEOUT)
    Host.objects.filter(name="node2").update(maintenance=False)
    axe(page)

    page.reload()
    tab_to(page, page.get_by_test_id("console-connect"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("console-state")).to_contain_text("Connected", timeout=20_000)
    axe(page)
    # The guest has the keyboard now; Ctrl+] (as in virsh console) gives it back.
    page.keyboard.press("Control+BracketRight")
    assert page.evaluate("() => !!document.activeElement.closest('.iso-console-bar')")

    panel = page.get_by_test_id("migration-panel")
    page.evaluate("window.__sameDocument = true")
    tab_to(page, panel.get_by_role("button", name="Migrate"))
    page.keyboard.press("Enter")
    # Sent in place: the page (and its console) stays, the request is confirmed in the
    # panel and the keyboard stays there while the button is gone.
    note = panel.get_by_test_id("migrate-note")
    expect(note).to_have_text("Live migration of kb-1 requested.", timeout=20_000)
    expect(note).to_be_focused()
    expect(panel.get_by_test_id("migration-progress")).to_be_visible(timeout=20_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "keyboard-migration.png"), full_page=True)
    axe(page)
    expect(announcer).to_have_text("VM kb-1 is now Migrating", timeout=20_000)
    wait_for(
        lambda: Migration.objects.filter(vm=vm, phase="Succeeded").exists(),
        GUEST_BOOT_TIMEOUT,
        message="the migration did not finish",
    )
    expect(announcer).to_have_text("VM kb-1 is now Running", timeout=30_000)
    # The history shows the finished migration without a reload.
    expect(panel.get_by_test_id("migration-history")).to_contain_text("Succeeded", timeout=15_000)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
