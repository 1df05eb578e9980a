"""Metering edge cases: what a tenant is charged for, to the minute, through resizes,
migrations, restarts, retried tasks, clock boundaries and a deleted tenant.

VMs are created and deleted with the real services on libvirt's test driver; the clock
is frozen and moved with time-machine, so "created at 10:17, deleted at 11:02" is
exactly that. What is checked is what a tenant sees: the usage report.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import transaction

from compute.backends import backend_for_host
from compute.choices import Phase
from compute.models import Image, Migration, VirtualMachine
from compute.services import migrations as migration_services
from compute.services import vms as vm_services
from portal.exceptions import QuotaExceeded
from portal.failpoints import FailpointError, armed
from tenants import services as tenant_services
from tenants.models import Reservation, Tenant
from tests.usage.conftest import at
from usage import selectors
from usage.models import UsageDaily, UsageHourly, UsageInterval, UsageSubject
from usage.services.metering import usage_rollup

pytestmark = [pytest.mark.libvirt_test_driver, pytest.mark.django_db]


def report(tenant, first="2026-03-02", last="2026-03-02", now=None):
    return selectors.usage_report(
        tenant,
        start=date.fromisoformat(first),
        end=date.fromisoformat(last),
        now=at(now) if now else None,
    )


def vm_intervals():
    """The VMs' own intervals (a VM's root disk is metered on its volume's)."""
    return UsageInterval.objects.filter(subject__kind="vm")


def delete_vm(vm):
    """What the delete task does once the domain is gone."""
    vm_services.vm_finalize_delete(vm, backend_for_host(vm.host))


def hours(line, metric):
    return line.hours[metric]


@pytest.fixture
def host(make_host):
    return make_host("node-a")


def create_vm(demo, tiny_image, name="web1", vcpus=2, memory=1024, disk=10, labels=None):
    return vm_services.vm_create(
        actor=demo.alice,
        tenant=demo.acme,
        name=name,
        image=tiny_image,
        vcpus=vcpus,
        memory_mib=memory,
        disk_gib=disk,
        labels=labels or {},
    )


def test_a_vm_created_at_10_17_and_deleted_at_11_02_is_charged_45_minutes(
    demo, host, tiny_image, clock
):
    clock("2026-03-02 10:17")
    vm = create_vm(demo, tiny_image, vcpus=2, memory=1024, disk=10, labels={"team": "web"})
    clock("2026-03-02 11:02")
    delete_vm(vm)

    clock("2026-03-02 12:30")
    usage_rollup()
    day = report(demo.acme).totals
    assert hours(day, "vm_hours") == Decimal("0.75")
    assert hours(day, "vcpu_hours") == Decimal("1.5")
    assert hours(day, "memory_gib_hours") == Decimal("0.75")
    assert hours(day, "storage_gib_hours") == Decimal("7.5")
    # Cut at the hour: 43 minutes in the 10 o'clock hour, 2 in the 11 o'clock one.
    rows = dict(UsageHourly.objects.filter(subject__kind="vm").values_list("hour", "vm_ms"))
    assert rows == {at("2026-03-02 10:00"): 43 * 60_000, at("2026-03-02 11:00"): 2 * 60_000}
    line = report(demo.acme).by_subject[0]
    assert (line.label, line.kind, line.labels) == ("web1", "vm", {"team": "web"})


def test_the_report_is_exact_before_the_rollup_has_run(demo, host, tiny_image, clock):
    clock("2026-03-02 10:17")
    vm = create_vm(demo, tiny_image)
    clock("2026-03-02 11:02")
    delete_vm(vm)
    clock("2026-03-02 11:05")
    assert hours(report(demo.acme).totals, "vm_hours") == Decimal("0.75")
    assert not UsageHourly.objects.exists()


def test_a_running_vm_is_charged_up_to_now(demo, host, tiny_image, clock):
    clock("2026-03-02 09:00")
    create_vm(demo, tiny_image, vcpus=1)
    clock("2026-03-02 09:40")
    assert hours(report(demo.acme).totals, "vm_hours") == Decimal("0.666667")
    clock("2026-03-02 12:00")
    usage_rollup()
    clock("2026-03-02 12:30")
    # Rolled-up hours (9, 10) + the hours not rolled up yet (11:00-12:30) computed live.
    assert hours(report(demo.acme).totals, "vm_hours") == Decimal("3.5")


def test_a_resize_mid_hour_charges_each_size_for_its_half_and_the_vm_once(
    demo, host, tiny_image, clock
):
    clock("2026-03-02 10:00")
    vm = create_vm(demo, tiny_image, vcpus=2, memory=1024)
    clock("2026-03-02 10:30")
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.STOPPED)
    vm.refresh_from_db()
    vm_services.vm_update(actor=demo.alice, vm=vm, vcpus=4, memory_mib=2048)
    clock("2026-03-02 11:00")
    delete_vm(VirtualMachine.objects.get(pk=vm.pk))

    clock("2026-03-02 13:00")
    usage_rollup()
    day = report(demo.acme).totals
    assert hours(day, "vcpu_hours") == Decimal("3")  # 2 × ½ h + 4 × ½ h
    assert hours(day, "memory_gib_hours") == Decimal("1.5")
    assert hours(day, "vm_hours") == Decimal("1")  # one VM for one hour, not two
    assert vm_intervals().count() == 2
    assert UsageSubject.objects.filter(kind="vm").count() == 1
    assert sorted(line.kind for line in report(demo.acme).by_subject) == [
        "vm",
        "volume",
    ]  # its root disk


def test_a_live_migration_does_not_restart_or_double_the_charge(demo, make_host, tiny_image, clock):
    source, target = make_host("node-a"), make_host("node-b")
    clock("2026-03-02 10:00")
    vm = create_vm(demo, tiny_image, vcpus=2)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING, host=source)
    clock("2026-03-02 10:20")
    migration = Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=source,
        target=target,
        phase="Running",
        started=at("2026-03-02 10:20"),
    )
    clock("2026-03-02 10:21")
    migration_services.migration_succeed(migration, vnc_port=5901)
    assert VirtualMachine.objects.get(pk=vm.pk).host == target
    clock("2026-03-02 12:00")
    delete_vm(VirtualMachine.objects.get(pk=vm.pk))
    clock("2026-03-02 13:00")
    usage_rollup()
    assert hours(report(demo.acme).totals, "vm_hours") == Decimal("2")
    assert hours(report(demo.acme).totals, "vcpu_hours") == Decimal("4")
    assert vm_intervals().count() == 1


def test_stopping_and_starting_a_vm_keeps_one_continuous_charge(demo, host, tiny_image, clock):
    clock("2026-03-02 10:00")
    vm = create_vm(demo, tiny_image, vcpus=1)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    clock("2026-03-02 10:10")
    vm_services.vm_action(actor=demo.alice, vm=VirtualMachine.objects.get(pk=vm.pk), action="stop")
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.STOPPED)
    clock("2026-03-02 10:20")
    vm_services.vm_action(actor=demo.alice, vm=VirtualMachine.objects.get(pk=vm.pk), action="start")
    clock("2026-03-02 11:00")
    # A stopped VM keeps its resources (and its charge): one interval, one hour.
    assert hours(report(demo.acme).totals, "vm_hours") == Decimal("1")
    assert vm_intervals().count() == 1


def test_a_delete_task_that_runs_twice_releases_and_charges_once(demo, host, tiny_image, clock):
    clock("2026-03-02 10:00")
    vm = create_vm(demo, tiny_image)
    clock("2026-03-02 10:30")
    delete_vm(vm)
    clock("2026-03-02 10:45")
    delete_vm(vm)  # a retried task: the VM row is gone already
    assert tenant_services.quota_release(f"vm:{vm.uid}") is False
    assert vm_intervals().get().end == at("2026-03-02 10:30")
    clock("2026-03-02 12:00")
    assert hours(report(demo.acme).totals, "vm_hours") == Decimal("0.5")


def test_a_ledger_transaction_that_rolls_back_meters_nothing(demo, host, tiny_image, clock):
    clock("2026-03-02 10:00")
    with pytest.raises(RuntimeError), transaction.atomic():
        tenant_services.quota_reserve(tenant=demo.acme, ref="vm:rolled-back", vms=1, cpu=1)
        raise RuntimeError("the create failed after the reservation")
    assert not UsageInterval.objects.exists()
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"cpu": 1})
    with pytest.raises(QuotaExceeded):
        create_vm(demo, tiny_image, vcpus=2)
    assert not UsageInterval.objects.exists()
    assert not Reservation.objects.exists()


def test_a_release_that_fails_half_way_keeps_the_charge_running(demo, host, tiny_image, clock):
    """The interval closes in the ledger's transaction: a delete that dies after the
    release (a worker crash, here a failpoint in the event) leaves both as they were."""
    clock("2026-03-02 10:00")
    vm = create_vm(demo, tiny_image)
    clock("2026-03-02 10:30")
    with armed("usage.interval.closed", "raise"), pytest.raises(FailpointError):
        delete_vm(vm)
    assert Reservation.objects.get(ref=f"vm:{vm.uid}").released is None
    assert vm_intervals().get().end is None
    clock("2026-03-02 10:40")
    delete_vm(vm)  # the retry
    assert vm_intervals().get().end == at("2026-03-02 10:40")


@pytest.mark.parametrize(
    ("begin", "finish", "expected"),
    [
        # exactly one clock hour: one hourly row of 60 minutes
        ("2026-03-02 10:00", "2026-03-02 11:00", {"2026-03-02": Decimal("1")}),
        # across midnight: half on each day
        (
            "2026-03-02 23:30",
            "2026-03-03 00:30",
            {"2026-03-02": Decimal("0.5"), "2026-03-03": Decimal("0.5")},
        ),
        # across a month's end
        (
            "2026-03-31 23:45",
            "2026-04-01 00:15",
            {"2026-03-31": Decimal("0.25"), "2026-04-01": Decimal("0.25")},
        ),
        # less than a second
        ("2026-03-02 10:00:00", "2026-03-02 10:00:00.5", {"2026-03-02": Decimal("0.000139")}),
    ],
)
def test_clock_boundaries_split_exactly(demo, clock, begin, finish, expected):
    clock(begin)
    with transaction.atomic():
        tenant_services.quota_reserve(tenant=demo.acme, ref="other:x", vms=1)
    clock(finish)
    tenant_services.quota_release("other:x")
    clock("2026-04-03 00:00")
    usage_rollup()
    got = report(demo.acme, "2026-03-01", "2026-04-02")
    by_day = {d.key: d.hours["vm_hours"] for d in got.days if d.hours["vm_hours"]}
    assert by_day == expected


def test_hour_rows_of_an_exact_hour_hold_exactly_an_hour(demo, clock):
    clock("2026-03-02 10:00")
    with transaction.atomic():
        tenant_services.quota_reserve(tenant=demo.acme, ref="other:x", pods=3)
    clock("2026-03-02 11:00")
    tenant_services.quota_release("other:x")
    clock("2026-03-02 12:00")
    usage_rollup()
    assert list(UsageHourly.objects.values_list("hour", "pod_ms")) == [
        (at("2026-03-02 10:00"), 3 * 3_600_000)
    ]


def test_a_rollup_that_crashes_half_way_and_runs_again_counts_everything_once(demo, clock):
    clock("2026-03-01 08:00")
    with transaction.atomic():
        tenant_services.quota_reserve(tenant=demo.acme, ref="other:a", vms=1, cpu=2)
    clock("2026-03-03 08:00")
    with armed("usage.rollup.after_hour", "raise"), pytest.raises(FailpointError):
        usage_rollup()
    assert not UsageDaily.objects.exists()  # the day's transaction rolled back whole
    usage_rollup()
    usage_rollup()  # and once more: nothing changes
    clock("2026-03-03 08:00")
    got = report(demo.acme, "2026-03-01", "2026-03-03")
    assert [d.hours["vm_hours"] for d in got.days] == [Decimal(16), Decimal(24), Decimal(8)]
    assert hours(got.totals, "vcpu_hours") == Decimal(96)


def test_a_deleted_tenants_usage_stays_and_stops_when_it_is_deleted(demo, clock):
    clock("2026-03-02 10:00")
    gone = tenant_services.tenant_create(actor=demo.admin, slug="gone")
    with transaction.atomic():
        tenant_services.quota_reserve(tenant=gone, ref="image:x", kind="image", storage=10)
    Image.objects.create(name="disk", tenant=gone, kind="disk", disk_path="/x", source="url")
    clock("2026-03-02 10:30")
    Tenant.objects.filter(slug="gone").delete()  # cascades its images and reservations
    interval = UsageInterval.objects.get()
    assert (interval.end, interval.tenant_id) == (at("2026-03-02 10:30"), None)
    clock("2026-03-04 00:00")
    usage_rollup()
    month = selectors.monthly_report(date(2026, 3, 1))
    assert [(m.slug, m.deleted, m.hours["storage_gib_hours"]) for m in month] == [
        ("gone", True, Decimal(5))
    ]
    # A new tenant with the same slug does not inherit the old one's usage.
    again = tenant_services.tenant_create(actor=demo.admin, slug="gone")
    assert hours(report(again).totals, "storage_gib_hours") == 0
