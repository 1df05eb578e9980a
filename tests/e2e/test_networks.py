"""Networks and interfaces in the browser against a real Celery worker and libvirt's
test driver: create a network, give a running VM a second interface on it, see it (and
the first interface's address from the DHCP leases) on the VM page, live in a second
tab, then remove it and delete the network."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.choices import Phase
from compute.models import Network, NetworkInterface
from tests.compute.services.test_networks import vm_on
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import ARTIFACTS, login, wait_for

pytestmark = pytest.mark.e2e

PHASE_TIMEOUT = 60_000  # ms: live updates wait on Celery tasks, slow on a busy 2-core machine


def test_bob_creates_a_network_and_gives_a_running_vm_a_second_interface_on_it(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    vm = wait_phase(vm_on(demo, "web-1"), Phase.RUNNING)
    # The test driver answers a lease for the running guest's interface.
    wait_for(lambda: NetworkInterface.objects.get(vm=vm, name="nic0").addresses)
    address = NetworkInterface.objects.get(vm=vm, name="nic0").addresses[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # A second tab keeps the VM page open: it must follow by itself.
    watcher = new_page()
    login(watcher, live_url, "bob")
    watcher.goto(f"{live_url}/t/acme/vms/web-1/")
    panel = watcher.get_by_test_id("vm-nics")
    expect(panel.get_by_test_id("nic-nic0")).to_contain_text("default")
    expect(panel.get_by_test_id("nic-nic0").get_by_test_id("nic-addresses")).to_have_text(address)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/")
    page.get_by_role("link", name="Networks").first.click()
    page.wait_for_url(f"{live_url}/t/acme/networks/")
    expect(page.get_by_test_id("network-default")).to_contain_text("NAT")
    expect(page.get_by_test_id("networks-left")).to_contain_text("9 of 10 networks left")
    form = page.get_by_test_id("network-form")
    form.get_by_label("Name").fill("backend")
    form.get_by_label("Address range (CIDR)").fill("192.168.60.0/30")
    form.get_by_role("button", name="Create network").click()
    # Too small: the field says why, nothing is made.
    expect(page.get_by_test_id("error-cidr")).to_contain_text("too small")
    assert not Network.objects.filter(name="backend").exists()
    axe(page, "networks page with a field error")
    page.get_by_label("Address range (CIDR)").fill("192.168.60.0/24")
    page.get_by_role("button", name="Create network").click()
    page.wait_for_url(f"{live_url}/t/acme/networks/")
    expect(page.get_by_test_id("messages")).to_contain_text("Network backend (192.168.60.0/24)")
    row = page.get_by_test_id("network-backend")
    expect(row).to_contain_text("192.168.60.1")
    expect(row).to_contain_text("Ready")
    page.screenshot(path=str(ARTIFACTS / "networks-bob.png"), full_page=True)
    axe(page, "networks page")

    page.goto(f"{live_url}/t/acme/vms/web-1/")
    add = page.get_by_test_id("vm-nic-form")
    add.get_by_label("Add an interface on").select_option("backend")
    add.get_by_label("Fixed address").fill("192.168.60.10")
    add.get_by_role("button", name="Add interface").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Adding an interface on backend")
    second = page.get_by_test_id("nic-nic1")
    expect(second).to_contain_text("backend")
    expect(second.get_by_test_id("nic-phase")).to_have_text("Attached", timeout=PHASE_TIMEOUT)
    expect(second.get_by_test_id("nic-addresses")).to_contain_text("192.168.60.10")
    axe(page, "VM page with interfaces")

    # The tab that stayed open has the new interface, without a reload.
    live_row = watcher.get_by_test_id("nic-nic1")
    expect(live_row).to_contain_text("backend", timeout=PHASE_TIMEOUT)
    expect(live_row.get_by_test_id("nic-phase")).to_have_text("Attached", timeout=PHASE_TIMEOUT)
    expect(live_row).to_contain_text(NetworkInterface.objects.get(name="nic1").mac)
    watcher.screenshot(path=str(ARTIFACTS / "vm-nics-live.png"), full_page=True)

    # A network with interfaces is not deleted (alice is the tenant's admin).
    admin = new_page()
    login(admin, live_url, "alice")
    admin.goto(f"{live_url}/t/acme/networks/")
    admin.get_by_test_id("network-backend").get_by_role("button", name="Delete").click()
    admin.locator("#vm-confirm").get_by_role("button", name="Delete").click()
    expect(admin.get_by_test_id("messages")).to_contain_text("remove them from their VMs first")
    interfaces = admin.get_by_test_id("network-backend").locator('[data-network-field="nics"]')
    expect(interfaces).to_have_text("1")

    # Removing it from the live row asks first; the row goes in both tabs.
    live_row.get_by_role("button", name="Remove").click()
    modal = watcher.locator("#vm-confirm")
    expect(modal).to_contain_text("Remove nic1")
    modal.get_by_role("button", name="Remove").click()
    expect(watcher.get_by_test_id("nic-nic1")).to_have_count(0, timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("nic-nic1")).to_have_count(0, timeout=PHASE_TIMEOUT)
    # alice's Networks page, open since before, counts the interface gone without a reload.
    expect(interfaces).to_have_text("0", timeout=PHASE_TIMEOUT)

    admin.goto(f"{live_url}/t/acme/networks/")
    admin.get_by_test_id("network-backend").get_by_role("button", name="Delete").click()
    admin.locator("#vm-confirm").get_by_role("button", name="Delete").click()
    expect(admin.get_by_test_id("messages")).to_contain_text("Deleting network backend")
    expect(admin.get_by_test_id("network-backend")).to_have_count(0, timeout=PHASE_TIMEOUT)


def test_a_viewer_sees_networks_and_interfaces_but_no_forms(
    demo, make_host, tiny_image, celery_worker, live_url, new_page
):
    make_host("node-a")
    wait_phase(vm_on(demo, "web-1"), Phase.RUNNING)
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/networks/")
    expect(page.get_by_test_id("network-default")).to_be_visible()
    expect(page.get_by_test_id("network-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    expect(page.get_by_test_id("nic-nic0")).to_be_visible()
    expect(page.get_by_test_id("vm-nic-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
