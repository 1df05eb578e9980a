"""Usage over more subjects than one PostgreSQL statement can name (65,535 values once
they are sent apart from the SQL): a report over a busy pool's VMs of a year, a rollup
of an hour in which a big platform's VMs all reported samples."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from django.db import connection

from compute.models import VirtualMachine
from monitoring.models import VMSample
from tests.conftest import postgres_only
from tests.usage.conftest import at
from usage import selectors
from usage.models import UsageDaily, UsageHourly, UsageInterval, UsageSubject
from usage.services.metering import usage_rollup

pytestmark = pytest.mark.unit

SUBJECTS = 66_000


def copies(template, source: str, where: str = "TRUE", **columns: str) -> None:
    """Copies of ``template``'s row made by PostgreSQL, one per row of ``source`` (a
    FROM item) that ``where`` holds for: each column as the template has it, but those
    in ``columns``, SQL expressions over ``source`` and the template (``t``; a literal
    ``%`` written ``%%``). Building 66,000 rows of each kind in Python took most of
    these tests' minutes."""
    model = type(template)
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    values = [columns.pop(f.column, f"t.{quote(f.column)}") for f in fields]
    assert not columns, f"no such column of {table}: {sorted(columns)}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
            f"SELECT {', '.join(values)} FROM {table} t, {source} "
            f"WHERE t.{quote(model._meta.pk.column)} = %s AND {where}",
            [template.pk],
        )


def vm_subject(demo, uid, name: str) -> UsageSubject:
    """A usage subject of acme's for the VM ``uid`` named ``name``."""
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
        ]
    )[0]


def test_a_report_over_66000_subjects_names_every_one(demo):
    postgres_only()
    subject = vm_subject(demo, 0, "ci-0")
    copies(
        subject,
        f"generate_series(1, {SUBJECTS - 1}) g",
        ref="'vm:' || g",
        object_id="g::text",
        name="'ci-' || g",
    )
    hour = 3_600_000
    daily = UsageDaily.objects.bulk_create(
        [UsageDaily(subject=subject, tenant=demo.acme, day=date(2026, 3, 2), vm_ms=hour)]
    )[0]
    copies(daily, f"{UsageSubject._meta.db_table} s", f"s.id <> {subject.pk}", subject_id="s.id")

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
    vm = VirtualMachine.objects.bulk_create(
        [
            VirtualMachine(
                uid=uuid.uuid4(),
                tenant=demo.acme,
                name="m-0",
                image=tiny_image,
                vcpus=2,
                memory_mib=512,
            )
        ]
    )[0]
    copies(vm, f"generate_series(1, {SUBJECTS - 1}) g", uid="gen_random_uuid()", name="'m-' || g")
    # Every VM of acme's but the template, in the copies below.
    vms, others = (
        VirtualMachine._meta.db_table,
        f"vm.tenant_id = {demo.acme.pk} AND vm.id <> {vm.pk}",
    )
    subject = vm_subject(demo, vm.uid, vm.name)
    copies(
        subject,
        f"{vms} vm",
        others,
        ref="'vm:' || vm.uid::text",
        object_id="vm.uid::text",
        name="vm.name",
    )
    # The log's first interval is where the rollup starts.
    UsageInterval.objects.create(
        subject=subject, tenant=demo.acme, start=at("2026-03-02 10:00"), cpu=2, vms=1
    )
    sample = VMSample.objects.bulk_create(
        [
            VMSample(
                vm=vm,
                time=at("2026-03-02 10:00"),
                cpu_percent=50.0,
                memory_used_mib=256.0,
                disk_read_bps=0,
                disk_write_bps=0,
                net_rx_bps=0,
                net_tx_bps=0,
            )
        ]
    )[0]
    # One sample per VM, somewhere in the hour.
    copies(
        sample,
        f"{vms} vm",
        others,
        vm_id="vm.id",
        time="t.time + (vm.id %% 3600) * interval '1 second'",
    )
    clock("2026-03-02 12:00")

    usage_rollup()

    used = UsageHourly.objects.filter(hour=at("2026-03-02 10:00"), samples=1)
    assert used.count() == SUBJECTS
    # one 10-second sample at half of 2 vCPUs: a vCPU for 10 s
    assert set(used.values_list("cpu_used_millicore_ms", flat=True)) == {1000 * 10_000}
