"""Usage benchmark: a month of 1,000 VMs, rolled up and reported.

Seeds one tenant with 1,000 VMs over a 31-day month (PostgreSQL, a fresh database):
each VM's life as 1-3 intervals in the usage log (created at a random minute, some
resized once, some deleted before the month ends; everything closed at the month's
end), bulk-inserted as ``quota_reserve``/``quota_release`` would have written them.
Then, in the same run:

- ``rollup``: the beat task catching up the whole month at once (hourly + daily rows);
- ``rollup_hour``: rolling up one busy hour again (the steady-state cost per run);
- ``report``: ``usage.selectors.usage_report`` for the month (totals, per day, per VM,
  per label), from the daily rollups — the usage page and API;
- ``report_from_log``: the same report computed from the interval log alone (no rollups);
- ``raw_sql``: the baseline — one SQL aggregate over the interval log computing each
  VM's allocated unit-hours for the month (overlap arithmetic in the database);

and checks that the report's totals equal the raw aggregate's.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/usage.py \
        [--vms 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import bench_database  # noqa: E402
from bench.vm_create import setup_django  # noqa: E402

MONTH = date(2026, 10, 1)


def seed(vms: int, seed_value: int = 7) -> int:
    from tenants import services
    from usage.models import UsageInterval, UsageSubject

    rng = random.Random(seed_value)
    tenant = services.tenant_create(actor=None, slug="bench")
    start = datetime.combine(MONTH, datetime.min.time(), UTC)
    end = start + timedelta(days=31)
    subjects = UsageSubject.objects.bulk_create(
        [
            UsageSubject(
                ref=f"vm:bench-{i:05d}",
                tenant=tenant,
                tenant_slug="bench",
                kind="vm",
                object_id=f"bench-{i:05d}",
                name=f"vm-{i:05d}",
                labels={"team": rng.choice(["web", "data", "ml", "ops"])},
            )
            for i in range(vms)
        ],
        batch_size=2000,
    )
    intervals = []
    for subject in subjects:
        born = start + timedelta(minutes=rng.randrange(0, 31 * 24 * 60 // 2))
        dies = (
            born + timedelta(minutes=rng.randrange(60, 31 * 24 * 60 // 2))
            if rng.random() < 0.3
            else end
        )
        size = {"cpu": Decimal(rng.choice([1, 2, 4])), "memory": rng.choice([1024, 2048, 8192])}
        cuts = [born, dies]
        if rng.random() < 0.4:  # resized once
            cuts.insert(1, born + (dies - born) * rng.random())
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            intervals.append(
                UsageInterval(
                    subject=subject,
                    tenant=tenant,
                    start=lo,
                    end=hi,
                    storage=20,
                    vms=1,
                    **size,
                )
            )
            size = {"cpu": size["cpu"] * 2, "memory": size["memory"] * 2}
    UsageInterval.objects.bulk_create(intervals, batch_size=5000)
    return len(intervals)


RAW = """
SELECT subject_id,
       SUM(cpu * 1000 * ms)::bigint AS cpu_millicore_ms,
       SUM(memory * ms)::bigint AS memory_mib_ms,
       SUM(storage * ms)::bigint AS storage_gib_ms,
       SUM(vms * ms)::bigint AS vm_ms
FROM (
    SELECT subject_id, cpu, memory, storage, vms,
           FLOOR(EXTRACT(EPOCH FROM LEAST(COALESCE("end", %(now)s), %(hi)s)) * 1000)
         - FLOOR(EXTRACT(EPOCH FROM GREATEST(start, %(lo)s)) * 1000) AS ms
    FROM usage_usageinterval
    WHERE tenant_id = %(tenant)s AND start < %(hi)s AND ("end" IS NULL OR "end" > %(lo)s)
) AS pieces
GROUP BY subject_id
"""


def raw_sql(tenant_id: int) -> list[tuple]:
    from django.db import connection
    from django.utils import timezone

    lo = datetime.combine(MONTH, datetime.min.time(), UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            RAW,
            {"tenant": tenant_id, "lo": lo, "hi": lo + timedelta(days=31), "now": timezone.now()},
        )
        return cursor.fetchall()


def timed(call, repeat: int) -> tuple[dict, object]:
    seconds = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return {
        "runs": repeat,
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
    }, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    setup_django(bench_database("isotope_bench_usage"))
    from django.db import connection

    from tenants.models import Tenant
    from usage import selectors
    from usage.models import UsageDaily, UsageHourly
    from usage.services import metering

    started = time.perf_counter()
    intervals = seed(args.vms)
    seeding = time.perf_counter() - started
    tenant = Tenant.objects.get(slug="bench")
    first, last = selectors.month_bounds(MONTH)

    rollup, result = timed(metering.usage_rollup, 1)
    busy_hour = datetime.combine(MONTH, datetime.min.time(), UTC) + timedelta(days=20, hours=13)
    rollup_hour, _ = timed(
        lambda: metering._rollup_hours(busy_hour, busy_hour + metering.HOUR, now=datetime.now(UTC)),
        args.repeat,
    )
    report_timing, report = timed(
        lambda: selectors.usage_report(tenant, start=first, end=last), args.repeat
    )

    # The same month without rollups: the report computed from the interval log alone.
    def from_log():
        lo = datetime.combine(first, datetime.min.time(), UTC)
        return metering.amounts_between(
            lo, lo + timedelta(days=31), tenant_id=tenant.pk, bucket=metering.DAY
        )

    log_timing, _ = timed(from_log, 1)
    raw_timing, raw = timed(lambda: raw_sql(tenant.pk), args.repeat)

    raw_vcpu = Decimal(sum(row[1] for row in raw)) / (1000 * 3_600_000)
    report_vcpu = report.totals.hours["vcpu_hours"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('usage_usagedaily')")
        daily_bytes = cursor.fetchone()[0]
    daily_rows = UsageDaily.objects.count()
    print(
        json.dumps(
            {
                "benchmark": "usage",
                "vms": args.vms,
                "intervals": intervals,
                "month": MONTH.strftime("%Y-%m"),
                "seed_s": round(seeding, 2),
                "rollup_catch_up": {**rollup, "hours": result.hours},
                "rollup_one_hour": rollup_hour,
                "report_month": report_timing,
                "report_month_from_log": log_timing,
                "raw_sql_month": raw_timing,
                "report_over_raw": round(report_timing["median_s"] / raw_timing["median_s"], 2),
                "vcpu_hours": {
                    "report": str(report_vcpu),
                    "raw_sql": str(raw_vcpu.quantize(Decimal("0.000001"))),
                },
                "exact": abs(report_vcpu - raw_vcpu) < Decimal("0.00001"),
                "rows": {"hourly": UsageHourly.objects.count(), "daily": daily_rows},
                "daily_bytes_per_row": round(daily_bytes / max(daily_rows, 1)),
                "daily_bytes_per_year_1000_vms": daily_bytes // max(daily_rows, 1) * 1000 * 365,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
