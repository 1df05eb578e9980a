"""The platform admin's host list says how full each host is: what the scheduler counts
there (VMs migrating in included) against what it may place."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from compute.models import Host, Image, Migration, VirtualMachine
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def test_the_host_list_shows_what_is_placed_on_each_host_against_its_room(
    demo, live_url, new_page, axe
):
    def host(name: str) -> Host:
        return Host.objects.create(
            name=name, uri=f"test:///{name}", reachable=True, cpus=8, memory_mib=16384,
            cpu_ratio=Decimal("2"),
        )  # fmt: skip

    one, two = host("rack1-node1"), host("rack1-node2")
    image = Image.objects.create(name="tiny", kind="kernel", kernel_path="/k", initrd_path="/i")
    web = VirtualMachine.objects.create(
        tenant=demo.acme, name="web", vcpus=2, memory_mib=2048, image=image, host=one
    )
    VirtualMachine.objects.create(
        tenant=demo.acme, name="db", vcpus=4, memory_mib=4096, image=image, host=one
    )
    # web is on its way to node2: it counts there too until it has arrived.
    Migration.objects.create(
        tenant=demo.acme, vm=web, vm_name="web", source=one, target=two,
        phase="Running", started=timezone.now(),
    )  # fmt: skip

    admin = new_page()
    login(admin, live_url, "admin")
    admin.goto(f"{live_url}/admin/compute/host/")
    rows = admin.locator("#result_list tbody tr")

    def shown(host: str) -> list[str]:
        row = rows.filter(has_text=host)
        return [
            row.locator(f".field-{column}").inner_text()
            for column in ("vcpus_placed", "memory_placed", "vms_placed")
        ]

    # CPUs × ratio 2 = 16 vCPUs of room; web is counted on node2 too while it moves.
    assert shown("rack1-node1") == ["6 / 16", "6144 / 16384", "2"]
    assert shown("rack1-node2") == ["2 / 16", "2048 / 16384", "1"]
    header = admin.locator("#result_list thead")
    for title in ("vCPUs placed", "Memory placed (MiB)", "VMs"):
        expect(header).to_contain_text(title, ignore_case=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    admin.screenshot(path=str(ARTIFACTS / "admin-hosts-placed.png"), full_page=True)
    axe(admin, "admin-hosts")

    # The migration ends: node1 has given web up, node2 holds it once.
    Migration.objects.filter(vm=web).update(phase="Succeeded")
    VirtualMachine.objects.filter(pk=web.pk).update(host=two)
    admin.reload()
    assert shown("rack1-node1") == ["4 / 16", "4096 / 16384", "1"]
    assert shown("rack1-node2") == ["2 / 16", "2048 / 16384", "1"]
    # And the host's form shows them, read-only.
    admin.get_by_role("link", name="rack1-node2").click()
    expect(admin.locator(".field-vcpus_placed .readonly")).to_have_text("2 / 16")
    expect(admin.locator(".field-memory_placed .readonly")).to_have_text("2048 / 16384")
