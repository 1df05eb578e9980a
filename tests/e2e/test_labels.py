"""Changing a VM's labels in the browser (libvirt's test driver, no worker): an operator
opens "Edit labels" on the VM page, writes lines of key=value, saves, and sees the new
labels on the page and the change on its timeline; a bad key comes back on the field as
typed and changes nothing; a viewer sees the labels without the form. The same on a
workload's page (a cluster nobody reaches: the page, not the rollout, is tested here)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.choices import Phase
from compute.models import VirtualMachine, Workload
from compute.services import vms as vm_services
from compute.services import workloads as workload_services
from tests.compute.conftest import fake_cluster  # noqa: F401
from tests.conftest import ARTIFACTS, live_subscribed, login

pytestmark = pytest.mark.e2e


def bobs_vm_page(demo, make_host, live_url, new_page):
    """Bob on the page of web-1, Running with the label app=db: the page and the VM."""
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING, labels={"app": "db"})
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    return page, vm


def test_an_operator_edits_a_vms_labels_and_sees_them_on_the_page(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    page, vm = bobs_vm_page(demo, make_host, live_url, new_page)
    labels = page.get_by_test_id("vm-labels")
    expect(labels).to_have_text("app=db")

    editor = page.get_by_test_id("vm-edit-labels")
    editor.get_by_text("Edit labels").click()
    field = editor.get_by_label("Labels of web-1")
    expect(field).to_have_value("app=db")
    field.fill("app=web\ntier=front")
    editor.get_by_role("button", name="Save labels").click()

    expect(page.get_by_text("The labels of web-1 are now: app=web, tier=front.")).to_be_visible()
    expect(labels.locator(".iso-kv")).to_have_text(["app=web", "tier=front"])
    expect(page.get_by_test_id("vm-events")).to_contain_text(
        "Labels changed to app=web, tier=front by bob."
    )
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web", "tier": "front"}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("vm-spec").screenshot(path=str(ARTIFACTS / "vm-labels.png"))
    axe(page, "vm-labels")

    # A bad key: the reason on the field, the lines as typed, nothing changed.
    editor.get_by_text("Edit labels").click()
    field.fill("app=web\nbad key=x")
    editor.get_by_role("button", name="Save labels").click()
    expect(page.get_by_test_id("error-labels")).to_contain_text("Invalid key 'bad key'")
    expect(page.get_by_test_id("vm-edit-labels").get_by_label("Labels of web-1")).to_have_value(
        "app=web\nbad key=x"
    )
    expect(page.get_by_test_id("vm-labels").locator(".iso-kv")).to_have_text(
        ["app=web", "tier=front"]
    )
    page.get_by_test_id("vm-edit-labels").screenshot(path=str(ARTIFACTS / "vm-labels-error.png"))
    axe(page, "vm-labels-error")
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web", "tier": "front"}

    # A viewer reads them; there is no form.
    viewer = new_page()
    login(viewer, live_url, "carol")
    viewer.goto(f"{live_url}/t/acme/vms/web-1/")
    expect(viewer.get_by_test_id("vm-labels").locator(".iso-kv")).to_have_text(
        ["app=web", "tier=front"]
    )
    expect(viewer.get_by_test_id("vm-edit-labels")).to_have_count(0)


def test_an_operator_edits_a_workloads_labels_on_its_page(
    demo,
    fake_cluster,  # noqa: F811
    live_url,
    new_page,
    axe,
):
    workload_services.workload_create(
        actor=demo.bob, tenant=demo.acme, name="shop", image="nginx:1.27", labels={"app": "web"}
    )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/workloads/shop/")
    labels = page.get_by_test_id("workload-labels")
    expect(labels).to_have_text("app=web")
    editor = page.get_by_test_id("workload-edit-labels")
    editor.get_by_text("Edit labels").click()
    editor.get_by_label("Labels of shop").fill("app=api\nexample.com/team=payments")
    editor.get_by_role("button", name="Save labels").click()

    expect(page.get_by_text("The labels of shop are now:")).to_be_visible()
    expect(labels.locator(".iso-kv")).to_have_text(["app=api", "example.com/team=payments"])
    expect(page.get_by_test_id("workload-events")).to_contain_text(
        "Labels changed to app=api, example.com/team=payments by bob."
    )
    assert Workload.objects.get(name="shop").labels == {
        "app": "api",
        "example.com/team": "payments",
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("workload-spec").screenshot(path=str(ARTIFACTS / "workload-labels.png"))
    axe(page, "workload-labels")


def test_labels_changed_in_one_tab_redraw_in_the_others_without_a_reload(
    demo,
    make_host,
    tiny_image,
    fake_cluster,  # noqa: F811
    live_url,
    new_page,
):
    """The VM's and the workload's pages open in other tabs (a viewer's, and the same
    operator's second tab with its "Edit labels" form closed) redraw the labels from the
    live stream when they change in one tab; an open form keeps what is typed there."""
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING, labels={"app": "db"})
    workload_services.workload_create(
        actor=demo.bob, tenant=demo.acme, name="shop", image="nginx:1.27", labels={"app": "web"}
    )
    editing, second, viewer = new_page(), new_page(), new_page()
    for page, user in ((editing, "bob"), (second, "bob"), (viewer, "carol")):
        login(page, live_url, user)
    second.goto(f"{live_url}/t/acme/vms/web-1/")
    viewer.goto(f"{live_url}/t/acme/vms/web-1/")
    typing = second.get_by_test_id("vm-edit-labels")
    editing.goto(f"{live_url}/t/acme/vms/web-1/")
    for page in (second, viewer):
        expect(page.get_by_test_id("vm-labels")).to_have_text("app=db")

    editor = editing.get_by_test_id("vm-edit-labels")
    editor.get_by_text("Edit labels").click()
    editor.get_by_label("Labels of web-1").fill("tier=front\napp=web")
    editor.get_by_role("button", name="Save labels").click()
    expect(editing.get_by_text("The labels of web-1 are now:")).to_be_visible()

    for page in (second, viewer):
        expect(page.get_by_test_id("vm-labels").locator(".iso-kv")).to_have_text(
            ["tier=front", "app=web"]
        )
    typing.get_by_text("Edit labels").click()
    expect(typing.get_by_label("Labels of web-1")).to_have_value("app=web\ntier=front")

    # The form open in the second tab keeps its text; the labels beside it still follow.
    typing.get_by_label("Labels of web-1").fill("app=mine")
    vm_services.vm_relabel(actor=demo.alice, vm=VirtualMachine.objects.get(pk=vm.pk), labels={})
    expect(second.get_by_test_id("vm-labels")).to_have_text("none")
    expect(viewer.get_by_test_id("vm-labels")).to_have_text("none")
    expect(typing.get_by_label("Labels of web-1")).to_have_value("app=mine")

    # A workload's page the same way.
    viewer.goto(f"{live_url}/t/acme/workloads/shop/")
    expect(viewer.get_by_test_id("workload-labels")).to_have_text("app=web")
    editing.goto(f"{live_url}/t/acme/workloads/shop/")
    editor = editing.get_by_test_id("workload-edit-labels")
    editor.get_by_text("Edit labels").click()
    editor.get_by_label("Labels of shop").fill("app=api\nexample.com/team=payments")
    editor.get_by_role("button", name="Save labels").click()
    expect(viewer.get_by_test_id("workload-labels").locator(".iso-kv")).to_have_text(
        ["app=api", "example.com/team=payments"]
    )


def test_a_labels_form_opened_before_a_colleagues_change_applies_only_its_own_edit(
    demo, make_host, tiny_image, live_url, new_page
):
    """bob has "Edit labels" open while alice adds svc=lb (a Service selects by it):
    his form keeps his text, and saving it changes app and keeps svc=lb. With the form
    closed, the page follows alice's next label and bob's removal of it is applied."""
    page, vm = bobs_vm_page(demo, make_host, live_url, new_page)
    live_subscribed(page)
    editor = page.get_by_test_id("vm-edit-labels")
    editor.get_by_text("Edit labels").click()
    field = editor.get_by_label("Labels of web-1")
    field.fill("app=web")

    vm_services.vm_relabel(
        actor=demo.alice,
        vm=VirtualMachine.objects.get(pk=vm.pk),
        labels={"app": "db", "svc": "lb"},
    )
    labels = page.get_by_test_id("vm-labels")
    expect(labels.locator(".iso-kv")).to_have_text(["app=db", "svc=lb"])
    expect(field).to_have_value("app=web")
    editor.get_by_role("button", name="Save labels").click()

    expect(page.get_by_text("The labels of web-1 are now: app=web, svc=lb.")).to_be_visible()
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web", "svc": "lb"}

    # The closed form follows alice's next label; bob removes it and it is removed.
    live_subscribed(page)
    vm_services.vm_relabel(
        actor=demo.alice,
        vm=VirtualMachine.objects.get(pk=vm.pk),
        labels={"app": "web", "svc": "lb", "tier": "front"},
    )
    expect(labels.locator(".iso-kv")).to_have_text(["app=web", "svc=lb", "tier=front"])
    editor.get_by_text("Edit labels").click()
    expect(field).to_have_value("app=web\nsvc=lb\ntier=front")
    field.fill("app=web\nsvc=lb")
    editor.get_by_role("button", name="Save labels").click()

    expect(page.get_by_text("The labels of web-1 are now: app=web, svc=lb.")).to_be_visible()
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web", "svc": "lb"}
