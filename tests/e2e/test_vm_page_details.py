"""The VM page's small print in the browser: "Since" follows the phase live, migration
durations and disks read as people say them (libvirt's test driver, no worker)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from compute.choices import MigrationPhase, Phase
from compute.models import Migration, VirtualMachine, Volume
from compute.services import vms as vm_services
from compute.services.migrations import migration_state
from monitoring.services import resource_publish
from tests.conftest import ARTIFACTS, live_subscribed, login

pytestmark = pytest.mark.e2e


def test_since_follows_the_phase_live_and_keeps_counting(
    demo, make_host, tiny_image, live_url, new_page
):
    make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(
        phase=Phase.STOPPED, phase_changed=timezone.now() - timedelta(hours=2, minutes=5)
    )
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    since = page.get_by_test_id("vm-status").get_by_test_id("phase-since")
    expect(since).to_have_text("2 hours ago")
    live_subscribed(page)

    vm.refresh_from_db()
    vm_services.vm_observe(vm, Phase.RUNNING)  # what a task reports: a new phase, now
    expect(page.get_by_test_id("vm-status").get_by_test_id("phase")).to_have_text("Running")
    expect(since).to_have_text("just now")
    # ... and it keeps counting without a reload.
    expect(since).to_have_text(re.compile(r"^\d+ seconds ago$"), timeout=15_000)


def test_migration_history_says_how_long_it_took_and_a_shared_disk_is_not_copied(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    host = make_host("node-a")
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="web-1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    # Its root disk from before volumes: in the old pool every host sees (not copied).
    Volume.objects.filter(vm=vm).update(pool="isotope")
    started = timezone.now() - timedelta(minutes=10)
    for took in (2.6, 65):
        Migration.objects.create(
            tenant=demo.acme,
            vm=vm,
            vm_name=vm.name,
            source=host,
            target=host,
            phase=MigrationPhase.SUCCEEDED,
            started=started,
            finished=started + timedelta(seconds=took),
        )
    page = new_page()
    login(page, live_url, "alice")
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    panel = page.get_by_test_id("migration-panel")
    took = panel.get_by_test_id("migration-history").locator("[data-h-field=took]")
    expect(took).to_have_text(["1 min 5 s", "2.6 s"])
    live_subscribed(page)

    # A running migration of a VM whose 1 GiB disk is on shared storage: only memory
    # travels, and the panel says so instead of "Disk: none".
    running = Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=host,
        phase=MigrationPhase.RUNNING,
        started=timezone.now(),
        memory_total=256 * 2**20,
        memory_processed=64 * 2**20,
        memory_remaining=192 * 2**20,
        eta_seconds=65.2,
    )
    resource_publish(
        tenant=demo.acme,
        kind="migration",
        name=str(running.uid),
        data=migration_state(running),
    )
    current = panel.locator("[data-migration-current]")
    expect(current).to_be_visible()
    expect(current.locator("[data-m-field=disk]")).to_have_text(
        "1 GiB on shared storage — not copied"
    )
    expect(current.locator("[data-m-field=eta]")).to_have_text("1 min 5 s")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "migration-panel-details.png"))
    axe(page, "migration-panel-details")
