"""A quota refusal in the browser names every resource over its limit, each on its field."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from compute.models import VirtualMachine
from tenants import services as tenant_services
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def test_a_vm_too_big_in_cpu_memory_and_disk_shows_all_three_refusals_on_their_fields(
    demo, make_host, tiny_image, flavors, live_url, new_page, axe
):
    make_host("node-a")
    tenant_services.quota_set(
        actor=demo.admin, tenant=demo.acme, limits={"cpu": 1, "memory": 512, "storage": 5}
    )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/new/")
    page.get_by_label("Name").fill("big")
    page.get_by_label(re.compile(r"^Custom")).check()
    page.get_by_label("vCPUs", exact=True).fill("4")
    page.get_by_label("Memory (MiB)").fill("2048")
    page.get_by_label("Disk (GiB)").fill("10")
    page.get_by_role("button", name="Create VM").click()

    expect(page.get_by_test_id("error-vcpus")).to_have_text(
        "Quota exceeded for cpu: requested 4 cores, 1 core left of 1 core."
    )
    expect(page.get_by_test_id("error-memory_mib")).to_have_text(
        "Quota exceeded for memory: requested 2048 MiB, 512 MiB left of 512 MiB."
    )
    expect(page.get_by_test_id("error-disk_gib")).to_have_text(
        "Quota exceeded for storage: requested 10 GiB, 5 GiB left of 5 GiB."
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "vm-form-quota-refusal.png"), full_page=True)
    axe(page, "vm-form-quota-refusal")

    # A flavor that is too big: the same refusals, all on the size it was chosen by.
    page.get_by_label(re.compile(r"^medium")).check()
    page.get_by_role("button", name="Create VM").click()
    size_errors = page.get_by_test_id("error-size")
    expect(size_errors).to_have_count(3)
    expect(size_errors.nth(0)).to_contain_text("cpu: requested 2 cores, 1 core left of 1 core")
    expect(size_errors.nth(1)).to_contain_text("memory: requested 1024 MiB")
    expect(size_errors.nth(2)).to_contain_text("storage: requested 10 GiB")
    assert not VirtualMachine.objects.filter(name="big").exists()
