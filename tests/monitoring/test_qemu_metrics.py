"""Metrics of a real QEMU guest on libvirt node1: counters move between collections,
and the VM detail chart gains points live (qemu tier; the browser test is also e2e).

node1 is shared with other test runs: guests here are named ``mt-<hex>`` and only this
test's own domains are removed afterwards.
"""

from __future__ import annotations

import secrets
import time

import pytest
from playwright.sync_api import expect

from compute.backends import backend_for_host
from compute.backends.libvirt.backend import shared_connection
from compute.choices import ImageKind
from compute.models import Host, Image, VirtualMachine
from compute.services import vms as vm_services
from compute.services.hosts import host_check
from monitoring import collector
from monitoring.models import VMCounters, VMSample
from monitoring.tasks import metrics_collect
from tests.compute.services.test_vm_lifecycle import wait_ready
from tests.conftest import ARTIFACTS, login, require
from tools.infra import read_state

pytestmark = pytest.mark.qemu


@pytest.fixture
def node1(db):
    state = read_state("libvirt")
    image = read_state("image")
    require(state.get("ok"), f"libvirt nodes: {state.get('reason')}")
    require(image.get("ok"), f"tiny guest image: {image.get('reason')}")
    host = host_check(Host.objects.create(name="node1", uri="qemu:///system"))
    assert host.reachable, host.message
    Image.objects.create(
        name="tiny",
        display_name="Tiny guest",
        kind=ImageKind.KERNEL,
        kernel_path=image["kernel"],
        initrd_path=image["initrd"],
        min_memory_mib=128,
        ready_banner="ISOTOPE-GUEST-BOOTED",
    )
    yield host
    ours = {vm.domain_name for vm in VirtualMachine.objects.filter(name__startswith="mt-")}
    conn = shared_connection(host.uri)
    for domain in conn.listAllDomains():
        if domain.name() in ours:
            backend_for_host(host).delete(domain.name())


def running_guest(demo) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=f"mt-{secrets.token_hex(3)}",
        image="tiny",
        vcpus=1,
        memory_mib=256,
    )
    return wait_ready(vm, timeout=120)


def test_a_running_guest_s_cpu_time_grows_between_two_collections(demo, node1, celery_worker):
    vm = running_guest(demo)
    collector.metrics_collect(host=node1)
    first = VMCounters.objects.get(vm=vm)
    assert first.state == "running" and first.cpu_time_ns > 0
    assert first.memory_used_kib > 0  # balloon or the qemu process' resident size
    time.sleep(3)
    result = collector.metrics_collect(host=node1)
    assert result.samples >= 1
    second = VMCounters.objects.get(vm=vm)
    assert second.cpu_time_ns > first.cpu_time_ns
    sample = VMSample.objects.get(vm=vm)
    assert 0 < sample.cpu_percent <= 100
    assert sample.memory_used_mib > 0


@pytest.mark.e2e
def test_the_chart_of_a_running_guest_gains_points(demo, node1, celery_worker, live_url, new_page):
    vm = running_guest(demo)
    collector.metrics_collect(host=node1)
    time.sleep(1.1)
    collector.metrics_collect(host=node1)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/{vm.name}/")
    card = page.get_by_test_id("vm-metrics")
    expect(card).to_have_attribute("data-points", "1")
    for expected in (2, 3, 4):
        time.sleep(1.5)
        metrics_collect.delay(node1.pk)  # through the monitoring queue, as beat does
        expect(card).to_have_attribute("data-points", str(expected), timeout=15_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "vm-metrics-qemu.png"), full_page=True)
