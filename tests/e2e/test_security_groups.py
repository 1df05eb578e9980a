"""Security groups in the browser (a real Celery worker, libvirt's test driver): bob
creates a group, a bad port in the rule editor is a field error, a good rule shows in
the table and is removed after a confirmation, and a running VM's new interface is put
in the group; carol, a viewer, reads the groups but cannot edit them. bob moves an
interface to other groups with its row's "Edit groups" form (none checked is refused),
and the row follows a change made elsewhere live."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.choices import Phase
from compute.models import NetworkInterface, SecurityGroupRule
from compute.services import networks as network_services
from compute.services import security_groups as group_services
from tests.compute.services.test_networks import vm_on
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e

PHASE_TIMEOUT = 60_000  # ms: live updates wait on Celery tasks, slow on a busy 2-core machine


def test_bob_creates_a_group_edits_its_rules_and_puts_an_interface_in_it(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    wait_phase(vm_on(demo, "web-1"), Phase.RUNNING)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/")
    page.get_by_role("link", name="Security groups").first.click()
    page.wait_for_url(f"{live_url}/t/acme/securitygroups/")
    expect(page.get_by_test_id("securitygroup-default")).to_contain_text("default")
    axe(page, "security groups page")

    form = page.get_by_test_id("securitygroup-form")
    form.get_by_label("Name").fill("web")
    form.get_by_label("Description").fill("HTTPS from the office")
    form.get_by_role("button", name="Create security group").click()
    page.wait_for_url(f"{live_url}/t/acme/securitygroups/web/")
    expect(page.get_by_test_id("messages")).to_contain_text("Security group web created")
    expect(page.get_by_test_id("rule-empty")).to_be_visible()

    # A port out of range: the field says why, nothing is added.
    editor = page.get_by_test_id("rule-form")
    editor.get_by_label("Direction").select_option("ingress")
    editor.get_by_label("Protocol").select_option("tcp")
    editor.get_by_label("From port").fill("99999")
    editor.get_by_label("Other side (CIDR)").fill("10.0.0.0/8")
    editor.get_by_role("button", name="Add rule").click()
    expect(page.get_by_test_id("error-port_min")).to_contain_text("not a port number")
    assert not SecurityGroupRule.objects.filter(group__name="web").exists()
    axe(page, "rule editor with a field error")

    # A CIDR with host bits set is refused on its own field too.
    page.get_by_label("From port").fill("443")
    page.get_by_label("Other side (CIDR)").fill("10.0.0.1/8")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_test_id("error-remote_cidr")).to_contain_text("host bits")

    page.get_by_label("Other side (CIDR)").fill("10.0.0.0/8")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Rule added to web")
    row = page.get_by_test_id("rule-1")
    expect(row).to_contain_text("Ingress")
    expect(row).to_contain_text("443")
    expect(row).to_contain_text("10.0.0.0/8")
    page.screenshot(path=str(ARTIFACTS / "security-group-bob.png"), full_page=True)
    axe(page, "security group page")

    # A running VM's new interface goes in the group.
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    add = page.get_by_test_id("vm-nic-form")
    add.get_by_label("Add an interface on").select_option("default")
    add.get_by_label("web").check()
    add.get_by_role("button", name="Add interface").click()
    second = page.get_by_test_id("nic-nic1")
    expect(second.get_by_test_id("nic-groups")).to_have_text("web")
    expect(second.get_by_test_id("nic-phase")).to_have_text("Attached", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("nic-nic0").get_by_test_id("nic-groups")).to_have_text("default")
    assert [g.name for g in NetworkInterface.objects.get(name="nic1").security_groups.all()] == [
        "web"
    ]
    axe(page, "VM page with security groups")

    # The group lists its member; removing the rule asks first.
    page.goto(f"{live_url}/t/acme/securitygroups/web/")
    expect(page.get_by_test_id("securitygroup-members")).to_contain_text("web-1")
    page.get_by_test_id("rule-remove-1").click()
    modal = page.locator("#vm-confirm")
    expect(modal).to_contain_text("Remove this rule?")
    modal.get_by_role("button", name="Remove").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Rule removed from web")
    expect(page.get_by_test_id("rule-empty")).to_be_visible()


def test_a_viewer_reads_security_groups_but_cannot_edit_them(demo, live_url, new_page, axe):
    group_services.group_create(
        actor=None,
        tenant=demo.acme,
        name="web",
        rules=[
            {"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_cidr": "0.0.0.0/0"}
        ],
    )
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/securitygroups/")
    expect(page.get_by_test_id("securitygroup-web")).to_be_visible()
    expect(page.get_by_test_id("securitygroup-form")).to_have_count(0)
    page.get_by_role("link", name="web").click()
    page.wait_for_url(f"{live_url}/t/acme/securitygroups/web/")
    expect(page.get_by_test_id("rule-1")).to_contain_text("80")
    expect(page.get_by_test_id("rule-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    axe(page, "security group page for a viewer")


def test_bob_moves_an_interface_to_other_groups_and_the_row_follows_live(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    vm = wait_phase(vm_on(demo, "web-2"), Phase.RUNNING)
    for name in ("web", "db"):
        group_services.group_create(actor=None, tenant=demo.acme, name=name)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-2/")
    row = page.get_by_test_id("nic-nic0")
    expect(row.get_by_test_id("nic-groups")).to_have_text("default")
    edit = row.get_by_test_id("nic-edit-groups")
    edit.locator("summary").click()
    expect(edit.get_by_label("default")).to_be_checked()
    edit.get_by_label("default").uncheck()
    edit.get_by_label("web").check()
    axe(page, "VM page with an interface's groups form open")

    # Nothing checked: refused, nothing changes.
    edit.get_by_label("web").uncheck()
    edit.get_by_role("button", name="Save groups").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Choose at least one security group")
    expect(row.get_by_test_id("nic-groups")).to_have_text("default")

    edit.locator("summary").click()
    edit.get_by_label("default").uncheck()
    edit.get_by_label("web").check()
    edit.get_by_role("button", name="Save groups").click()
    expect(page.get_by_test_id("messages")).to_contain_text("nic0 of web-2 is in web now.")
    expect(row.get_by_test_id("nic-groups")).to_have_text("web")
    nic = NetworkInterface.objects.get(vm=vm, name="nic0")
    assert [g.name for g in nic.security_groups.all()] == ["web"]

    # Someone else moves it again: the row and the form's boxes follow without a reload.
    network_services.nic_groups_set(actor=demo.alice, nic=nic, groups=["db"])
    expect(row.get_by_test_id("nic-groups")).to_have_text("db", timeout=PHASE_TIMEOUT)
    expect(edit.get_by_label("db")).to_be_checked()
    expect(edit.get_by_label("web")).not_to_be_checked()
    page.screenshot(path=str(ARTIFACTS / "nic-groups-bob.png"), full_page=True)
