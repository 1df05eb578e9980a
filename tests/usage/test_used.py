"""Used amounts from the VM metrics, side by side with what was allocated."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from compute.backends import backend_for_host
from compute.services import vms as vm_services
from monitoring.models import VMSample
from tests.usage.conftest import at
from usage import selectors
from usage.models import UsageHourly
from usage.services.metering import usage_rollup

pytestmark = [pytest.mark.libvirt_test_driver, pytest.mark.django_db]


def samples(vm, start: str, minutes: int, *, cpu: float, memory: float) -> None:
    """What the collector writes every 10 s (ISOTOPE_METRICS_SECONDS) for ``vm``."""
    first = at(start)
    VMSample.objects.bulk_create(
        VMSample(
            vm=vm,
            time=first + timedelta(seconds=10 * i),
            cpu_percent=cpu,
            memory_used_mib=memory,
            disk_read_bps=0,
            disk_write_bps=0,
            net_rx_bps=0,
            net_tx_bps=0,
        )
        for i in range(minutes * 6)
    )


@pytest.fixture
def vm(demo, make_host, tiny_image, clock, settings):
    settings.ISOTOPE_METRICS_SECONDS = 10
    make_host("node-a")
    clock("2026-03-02 10:00")
    return vm_services.vm_create(
        actor=demo.alice,
        tenant=demo.acme,
        name="busy",
        image=tiny_image,
        vcpus=2,
        memory_mib=2048,
        disk_gib=1,
    )


def totals(demo):
    return selectors.usage_report(demo.acme, start=date(2026, 3, 2), end=date(2026, 3, 2)).totals


def test_used_cpu_and_memory_come_from_the_samples_beside_the_allocation(demo, vm, clock):
    samples(vm, "2026-03-02 10:00", 60, cpu=50.0, memory=512.0)
    clock("2026-03-02 12:00")
    usage_rollup()
    line = totals(demo)
    assert line.hours["vcpu_hours"] == Decimal(4)  # 2 vCPUs for 2 hours
    assert line.hours["vcpu_used_hours"] == Decimal(1)  # half of 2 vCPUs for the first hour
    assert line.hours["memory_gib_hours"] == Decimal(4)
    assert line.hours["memory_used_gib_hours"] == Decimal("0.5")


def test_a_vm_deleted_before_the_rollup_keeps_what_it_used(demo, vm, clock):
    samples(vm, "2026-03-02 10:00", 30, cpu=100.0, memory=1024.0)
    clock("2026-03-02 10:30")
    vm_services.vm_finalize_delete(vm, backend_for_host(vm.host))
    assert not VMSample.objects.exists()  # its samples went with it
    clock("2026-03-02 12:00")
    usage_rollup()
    usage_rollup()
    line = totals(demo)
    assert line.hours["vcpu_hours"] == Decimal(1)
    assert line.hours["vcpu_used_hours"] == Decimal(1)  # all of both vCPUs for ½ h
    assert line.hours["memory_used_gib_hours"] == Decimal("0.5")
    assert UsageHourly.objects.get(subject__kind="vm").samples == 180


def test_used_never_exceeds_what_was_allocated(demo, vm, clock, settings):
    # Samples more often than the setting says (a misconfigured collector): capped.
    settings.ISOTOPE_METRICS_SECONDS = 60
    samples(vm, "2026-03-02 10:00", 60, cpu=100.0, memory=4096.0)
    clock("2026-03-02 11:30")
    usage_rollup()
    line = totals(demo)
    assert line.hours["vcpu_used_hours"] <= line.hours["vcpu_hours"]
    assert line.hours["memory_used_gib_hours"] <= line.hours["memory_gib_hours"]
