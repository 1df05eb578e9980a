"""A real tiny guest in the browser (qemu tier): the VM page shows Running, then Ready
once the guest is up, without a reload; its serial log reads as text."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

from compute.models import VirtualMachine
from compute.services import vms as vm_services
from tests.compute.test_qemu_vms import node1  # noqa: F401 - fixture
from tests.conftest import ARTIFACTS, login, wait_for
from tests.e2e.axe import assert_accessible

pytestmark = [pytest.mark.e2e, pytest.mark.qemu]


def test_the_vm_page_shows_booting_then_ready_and_a_clean_serial_log(
    demo,
    node1,  # noqa: F811 - fixture
    celery_worker,
    live_url,
    new_page,
):
    name = f"mt-{secrets.token_hex(3)}"
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        start=False,
    )
    wait_for(lambda: VirtualMachine.objects.get(pk=vm.pk).phase == "Stopped", 60)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/{name}/")
    header = page.locator("h1")
    ready = header.get_by_test_id("ready")
    expect(ready).to_be_hidden()  # stopped: the phase says it all

    page.get_by_test_id("vm-actions").get_by_role("button", name="Start").click()
    expect(page.get_by_test_id("messages")).to_contain_text(f"Start requested for {name}")
    page.evaluate("window.__sameDocument = true")  # from here on, only live updates
    expect(header.get_by_test_id("phase")).to_have_text("Running", timeout=60_000)
    # The domain runs; the guest is still booting (TCG takes seconds).
    expect(ready).to_have_text("Booting…")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "vm-detail-booting.png"))
    expect(ready).to_have_text("Ready", timeout=120_000)
    expect(page.get_by_test_id("ready-message")).to_have_text(
        "The guest printed ISOTOPE-GUEST-BOOTED on its serial console."
    )
    expect(page.get_by_test_id("vm-events")).to_contain_text("after Running")
    page.screenshot(path=str(ARTIFACTS / "vm-detail-ready.png"))
    assert_accessible(page, "vm-detail-ready")
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"

    # The list says it too.
    page.goto(f"{live_url}/t/acme/vms/")
    expect(page.locator(f'tr[data-live-name="{name}"]').get_by_test_id("ready")).to_have_text(
        "Ready"
    )

    # The serial log shows what a terminal would: no raw escape sequences (the shell's
    # cursor-position query ESC[6n), no carriage returns.
    page.goto(f"{live_url}/t/acme/vms/{name}/console/")
    log = page.get_by_test_id("serial-log")
    log.locator("summary").click()
    text = log.locator("[data-serial-text]")
    expect(text).to_contain_text(f"ISOTOPE-GUEST-BOOTED hostname={name}", timeout=15_000)
    expect(text).to_contain_text(f"{name}:/#")
    content = text.text_content()
    assert "\x1b" not in content and "[6n" not in content and "\r" not in content
    text.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "vm-serial-log.png"), full_page=True)
    assert_accessible(page, "vm-serial-log")
