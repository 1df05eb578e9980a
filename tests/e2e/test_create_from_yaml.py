""" "Create from YAML" in Chromium: bob opens a VM's YAML page, clicks "Copy as new", sees
the copy's spec in the text box, breaks it and reads where (line and column), fixes it
and gets the new VM; the same in Chinese for a workload, with a refused field shown by
its API path. axe-core checks each page, errors shown included."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from compute.models import VirtualMachine, Workload
from compute.services import vms as vm_services
from tenants.models import UserPreference
from tests.compute.test_views_workloads import make
from tests.compute.test_views_workloads import world as workload_world  # noqa: F401
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def test_bob_copies_a_vm_as_new_from_its_yaml_page(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="src",
        image="tiny",
        vcpus=2,
        memory_mib=384,
        labels={"tier": "db"},
        start=False,
    )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/src/manifest/")
    page.get_by_role("link", name="Copy as new").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/new/yaml/?from=src&format=yaml")
    expect(page.get_by_role("link", name="Create from YAML")).to_have_attribute(
        "aria-current", "page"
    )
    text = page.get_by_label("The VM as YAML or JSON")
    expect(text).to_have_value(
        "metadata:\n  name: src-copy\n  labels:\n    tier: db\nspec:\n  image: tiny\n"
        "  vcpus: 2\n  memoryMiB: 384\n  diskGiB: 0\n  desiredState: stopped\n"
        "  restartPolicy: OnFailure\n"
    )
    expect(text).to_have_css("font-family", re.compile("monospace"))
    axe(page, "create VM from YAML")

    copy = text.input_value()
    text.fill(copy.replace("  vcpus: 2\n", "  vcpus: [2\n"))
    page.get_by_role("button", name="Create", exact=True).click()
    errors = page.get_by_test_id("manifest-errors")
    expect(page.get_by_test_id("form-errors")).to_have_text("The manifest is not valid.")
    expect(errors).to_contain_text("Line ")
    expect(text).to_have_attribute("aria-invalid", "true")
    axe(page, "create VM from YAML, refused")
    assert VirtualMachine.objects.count() == 1

    text.fill(copy.replace("src-copy", "twin"))
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{live_url}/t/acme/vms/twin/")
    expect(page.get_by_role("alert").filter(has_text="twin accepted")).to_be_visible()
    twin = VirtualMachine.objects.get(name="twin")
    assert (twin.vcpus, twin.memory_mib, twin.labels) == (2, 384, {"tier": "db"})


def test_bob_creates_a_workload_from_yaml_in_chinese(
    workload_world,  # noqa: F811
    live_url,
    new_page,
    axe,
):
    demo = workload_world
    make(demo, "shop", replicas=2)
    UserPreference.objects.update_or_create(user=demo.bob, defaults={"language": "zh-hans"})
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/workloads/")
    page.get_by_role("link", name="从 YAML 创建").click()
    page.wait_for_url(f"{live_url}/t/acme/workloads/new/yaml/")
    expect(page.get_by_role("heading", name="创建容器工作负载", level=1)).to_be_visible()
    text = page.get_by_label("以 YAML 或 JSON 描述的工作负载")
    expect(text).to_contain_text("nginx:1.27")
    axe(page, "create workload from YAML in Chinese")

    text.fill(
        "metadata:\n  name: api\nspec:\n  image: nginx:1.27\n  replicas: two\n  colour: blue\n"
    )
    page.get_by_role("button", name="创建", exact=True).click()
    expect(page.get_by_test_id("form-errors")).to_have_text("清单无效。")
    errors = page.get_by_test_id("manifest-errors")
    expect(errors).to_contain_text("spec.colour: 未知字段。")
    expect(errors).to_contain_text("spec.replicas:")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "create-from-yaml-zh-hans.png"), full_page=True)
    axe(page, "create workload from YAML in Chinese, refused")
    assert not Workload.objects.filter(name="api").exists()

    text.fill("metadata:\n  name: api\nspec:\n  image: nginx:1.27\n  replicas: 1\n")
    page.get_by_role("button", name="创建", exact=True).click()
    page.wait_for_url(f"{live_url}/t/acme/workloads/api/")
    assert Workload.objects.get(name="api").replicas == 1
