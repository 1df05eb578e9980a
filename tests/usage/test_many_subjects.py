"""Usage over more subjects than one PostgreSQL statement can name (65,535 values once
they are sent apart from the SQL): a report over a busy pool's VMs of a year, a rollup
of an hour in which a big platform's VMs all reported samples."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from compute.models import VirtualMachine
from monitoring.models import VMSample
from tests.conftest import postgres_only
from tests.usage.conftest import at
from usage import selectors
from usage.models import UsageDaily, UsageHourly, UsageInterval, UsageSubject
from usage.services.metering import usage_rollup

pytestmark = pytest.mark.unit

SUBJECTS = 66_000


def vm_subjects(demo, objects) -> list[UsageSubject]:
    """A usage subject of acme's for each (VM uid, name) in ``objects``."""
    return UsageSubject.objects.bulk_create(
        [
            UsageSubject(
                ref=f"vm:{uid}",
                tenant=demo.acme,
                tenant_slug="acme",
                kind="vm",
                object_id=str(uid),
                name=name,
            )
            for uid, name in objects
        ],
        batch_size=10_000,
    )


def test_a_report_over_66000_subjects_names_every_one(demo):
    postgres_only()
    subjects = vm_subjects(demo, ((i, f"ci-{i}") for i in range(SUBJECTS)))
    hour = 3_600_000
    UsageDaily.objects.bulk_create(
        [
            UsageDaily(subject=subject, tenant=demo.acme, day=date(2026, 3, 2), vm_ms=hour)
            for subject in subjects
        ],
        batch_size=10_000,
    )

    report = selectors.usage_report(demo.acme, start=date(2026, 3, 2), end=date(2026, 3, 2))

    names = {line.label for line in report.by_subject}
    assert len(names) == SUBJECTS
    assert {"ci-0", f"ci-{SUBJECTS - 1}"} <= names


def test_an_hour_of_samples_from_66000_vms_is_rolled_up_with_what_each_used(
    demo, tiny_image, clock, settings
):
    postgres_only()
    settings.ISOTOPE_METRICS_SECONDS = 10
    clock("2026-03-02 09:00")
    vms = VirtualMachine.objects.bulk_create(
        [
            VirtualMachine(
                uid=uuid.uuid4(),
                tenant=demo.acme,
                name=f"m-{i}",
                image=tiny_image,
                vcpus=2,
                memory_mib=512,
            )
            for i in range(SUBJECTS)
        ],
        batch_size=5_000,
    )
    subjects = vm_subjects(demo, ((vm.uid, vm.name) for vm in vms))
    # The log's first interval is where the rollup starts.
    UsageInterval.objects.create(
        subject=subjects[0], tenant=demo.acme, start=at("2026-03-02 10:00"), cpu=2, vms=1
    )
    VMSample.objects.bulk_create(
        [
            VMSample(
                vm=vm,
                time=at("2026-03-02 10:00") + timedelta(seconds=i % 3600),
                cpu_percent=50.0,
                memory_used_mib=256.0,
                disk_read_bps=0,
                disk_write_bps=0,
                net_rx_bps=0,
                net_tx_bps=0,
            )
            for i, vm in enumerate(vms)
        ],
        batch_size=5_000,
    )
    clock("2026-03-02 12:00")

    usage_rollup()

    used = UsageHourly.objects.filter(hour=at("2026-03-02 10:00"), samples=1)
    assert used.count() == SUBJECTS
    # one 10-second sample at half of 2 vCPUs: a vCPU for 10 s
    assert set(used.values_list("cpu_used_millicore_ms", flat=True)) == {1000 * 10_000}
