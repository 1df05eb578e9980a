"""Metric charts in the browser: the VM detail chart renders and gains points live as
collections run (test driver here; a real QEMU guest in tests/monitoring/test_qemu_metrics.py);
the tenant overview shows the totals."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from compute.backends import backend_for_host
from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from compute.services.reconcile import domain_spec
from monitoring import collector
from monitoring.tasks import metrics_collect
from tests.conftest import ARTIFACTS, login
from tests.e2e.axe import assert_accessible

pytestmark = pytest.mark.e2e


def points(page) -> int:
    return int(page.get_by_test_id("vm-metrics").get_attribute("data-points") or 0)


def test_the_vm_chart_renders_and_gains_points_as_collections_run(
    demo, make_host, tiny_image, live_url, new_page, celery_worker
):
    host = make_host("node-m")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="chart1", image="tiny", vcpus=1, memory_mib=256
    )
    backend = backend_for_host(host)
    backend.define(domain_spec(vm))
    backend.start(vm.domain_name)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    # The first collection keeps counters, the second (10 s later) stores a sample.
    start = timezone.now() - timedelta(seconds=10)
    collector.metrics_collect(host=host, now=start)
    collector.metrics_collect(host=host)

    page = new_page()
    login(page, live_url, "carol")  # a viewer sees the charts
    page.goto(f"{live_url}/t/acme/vms/chart1/")
    card = page.get_by_test_id("vm-metrics")
    expect(card).to_have_attribute("data-points", "1")
    expect(card.get_by_test_id("metrics-status")).to_contain_text("— 1 point · live")
    expect(card.locator("canvas")).to_have_count(4)
    # A VM younger than the hour is charted from its creation, not as a sliver at the
    # right edge of an empty hour.
    axis = page.evaluate(
        """() => { const s = Chart.getChart(document.querySelector('[data-metrics-chart=cpu]'))
        .scales.x; return [s.min, s.max]; }"""
    )
    created_ms = VirtualMachine.objects.get(pk=vm.pk).created.timestamp() * 1000
    assert abs(axis[0] - created_ms) < 15_000, (axis, created_ms)
    assert axis[1] - axis[0] < 5 * 60_000, axis

    # New collections arrive over the websocket, through the worker, without a reload.
    for expected in (2, 3):
        time.sleep(1.1)  # collections less than a second apart store no sample
        metrics_collect.delay(host.pk)
        expect(card).to_have_attribute("data-points", str(expected), timeout=10_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "vm-metrics-test-driver.png"))
    assert_accessible(page, "vm-metrics-test-driver")

    page.get_by_role("button", name="24 h").click()
    expect(card.get_by_test_id("metrics-status")).to_contain_text("5-minute averages")
    page.goto(f"{live_url}/t/acme/")
    usage = page.get_by_test_id("tenant-usage")
    expect(usage.locator('[data-metric-total="vmsRunning"]')).to_have_text("1")
    page.screenshot(path=str(ARTIFACTS / "tenant-overview-usage.png"), full_page=True)
    assert_accessible(page, "tenant-overview-usage")
