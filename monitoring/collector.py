"""Writes for VM metrics: collect a host's counters, roll samples up, prune old rows.

:func:`metrics_collect` reads every domain's counters on one host with one backend call
(``domain_stats``), derives rates from the deltas to the counters kept in
``VMCounters`` by the previous collection, stores one ``VMSample`` per running VM and
upserts the counters, in bulk; after commit it publishes the new points and the touched
tenants' totals. :func:`metrics_rollup` averages samples into 5-minute ``VMRollup``
rows; :func:`metrics_prune` applies the retention settings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Count, F, Func, IntegerField, Max
from django.utils import timezone

from compute.backends import backend_for_host
from compute.models import Host, VirtualMachine
from monitoring import selectors, services
from monitoring.models import VMCounters, VMRollup, VMSample

logger = logging.getLogger(__name__)

ROLLUP_SECONDS = 300
# Domain states in which counters are meaningful and a sample is stored.
ACTIVE_STATES = frozenset({"running", "blocked", "paused", "migrating"})
COUNTERS = ("cpu_time_ns", "disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes")
RATES = ("cpu_percent", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")
POINT_FIELDS = {
    "cpu": "cpu_percent",
    "mem": "memory_used_mib",
    "rd": "disk_read_bps",
    "wr": "disk_write_bps",
    "rx": "net_rx_bps",
    "tx": "net_tx_bps",
}


@dataclass(frozen=True)
class Collection:
    """What one collection did on one host."""

    host: str
    domains: int
    samples: int
    stats_seconds: float
    """Time spent in the backend's bulk call."""


def point_of(sample) -> dict:
    """The compact JSON form of a sample or rollup (chart series, live messages)."""
    point = {"t": int(sample.time.timestamp() * 1000)}
    for key, field in POINT_FIELDS.items():
        point[key] = round(getattr(sample, field), 2)
    return point


def _rates(stats: dict, previous: VMCounters | None, now: datetime, vcpus: int) -> dict | None:
    """Rates from the counter deltas since ``previous``, or None when there is no usable
    previous read (first read, domain restarted or migrated: counters went down)."""
    if previous is None or previous.state not in ACTIVE_STATES:
        return None
    seconds = (now - previous.time).total_seconds()
    if seconds < 1:
        return None
    deltas = {}
    for name in COUNTERS:
        delta = stats.get(name, 0) - getattr(previous, name)
        if delta < 0:
            return None
        deltas[name] = delta
    cpu = deltas["cpu_time_ns"] / (seconds * 1e9 * max(vcpus, 1)) * 100
    return {
        "cpu_percent": min(cpu, 100.0),
        "disk_read_bps": deltas["disk_read_bytes"] / seconds,
        "disk_write_bps": deltas["disk_write_bytes"] / seconds,
        "net_rx_bps": deltas["net_rx_bytes"] / seconds,
        "net_tx_bps": deltas["net_tx_bytes"] / seconds,
    }


def metrics_collect(*, host: Host, now: datetime | None = None) -> Collection:
    """Read the counters of every domain on ``host`` (one ``domain_stats`` call), store
    a sample per running VM known to Isotope and the new counters, then publish the
    points and the totals of the tenants concerned. Domains Isotope does not know are
    ignored. Safe to run twice: a read less than a second after the previous one stores
    counters but no sample.

    Raises ``TransientBackendError`` when the host does not answer.
    """
    backend = backend_for_host(host)
    started = time.perf_counter()
    stats = backend.domain_stats()
    stats_seconds = time.perf_counter() - started
    now = now or timezone.now()
    vms = {
        vm.domain_name: vm
        for vm in VirtualMachine.objects.filter(host=host)
        .select_related("tenant")
        # ``domain_name`` reads uid and legacy_domain_name: without them, two queries
        # per VM.
        .only("id", "uid", "legacy_domain_name", "name", "vcpus", "tenant__slug")
    }
    known = {name: vm for name, vm in vms.items() if name in stats}
    previous = VMCounters.objects.in_bulk([vm.pk for vm in known.values()])
    samples, counters, points = [], [], []
    for name, vm in known.items():
        current = stats[name]
        state = current.get("state", "nostate")
        row = VMCounters(
            vm_id=vm.pk,
            host_id=host.pk,
            time=now,
            state=state,
            memory_used_kib=current.get("memory_used_kib", 0),
            **{field: current.get(field, 0) for field in COUNTERS},
        )
        rates = (
            _rates(current, previous.get(vm.pk), now, vm.vcpus) if state in ACTIVE_STATES else None
        )
        if rates is not None:
            for field, value in rates.items():
                setattr(row, field, value)
            sample = VMSample(
                vm_id=vm.pk, time=now, memory_used_mib=row.memory_used_kib / 1024, **rates
            )
            samples.append(sample)
            points.append({"tenant": vm.tenant.slug, "vm": vm.name, "point": point_of(sample)})
        counters.append(row)
    with transaction.atomic():
        VMSample.objects.bulk_create(samples, batch_size=1000)
        VMCounters.objects.bulk_create(
            counters,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["vm"],
            update_fields=["host", "time", "state", "memory_used_kib", *COUNTERS, *RATES],
        )
        tenants = {vm.tenant.pk: vm.tenant.slug for vm in known.values()}
        by_id = selectors.tenants_metric_totals(tenants, now=now)
        totals = {slug: by_id[tenant_id] for tenant_id, slug in tenants.items()}
        services.metrics_publish(points=points, totals=totals)
    return Collection(
        host=host.name, domains=len(stats), samples=len(samples), stats_seconds=stats_seconds
    )


class _EpochBucket(Func):
    """Unix seconds of ``expression`` floored to a multiple of ``seconds`` (SQL)."""

    output_field = IntegerField()

    def __init__(self, expression, seconds: int):
        super().__init__(expression)
        self.seconds = int(seconds)

    def as_sql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        n = self.seconds
        if connection.vendor == "postgresql":
            return f"(FLOOR(EXTRACT(EPOCH FROM {sql}) / {n})::bigint * {n})", params
        return f"((CAST(strftime('%%s', {sql}) AS INTEGER) / {n}) * {n})", params


def _floor(moment: datetime) -> datetime:
    epoch = int(moment.timestamp()) // ROLLUP_SECONDS * ROLLUP_SECONDS
    return datetime.fromtimestamp(epoch, tz=moment.tzinfo or UTC)


def metrics_rollup(*, now: datetime | None = None) -> int:
    """Average raw samples into 5-minute ``VMRollup`` rows for every complete bucket
    since the last rollup (recomputing that one, for samples committed late), in the
    database. Idempotent (upsert). Returns the number of rollups written."""
    now = now or timezone.now()
    end = _floor(now)
    start = end - timedelta(hours=settings.ISOTOPE_METRICS_RAW_HOURS)
    last = VMRollup.objects.aggregate(last=Max("time"))["last"]
    if last is not None:
        start = max(start, last)
    rows = (
        VMSample.objects.filter(time__gte=start, time__lt=end)
        .annotate(bucket=_EpochBucket(F("time"), ROLLUP_SECONDS))
        .values("vm_id", "bucket")
        .annotate(
            samples=Count("id"),
            **{field: Avg(field) for field in ("memory_used_mib", *RATES)},
        )
        .order_by()
    )
    rollups = [
        VMRollup(
            vm_id=row.pop("vm_id"),
            time=datetime.fromtimestamp(int(row.pop("bucket")), tz=UTC),
            **row,
        )
        for row in rows
    ]
    VMRollup.objects.bulk_create(
        rollups,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["vm", "time"],
        update_fields=["samples", "memory_used_mib", *RATES],
    )
    return len(rollups)


def metrics_prune(*, now: datetime | None = None) -> tuple[int, int]:
    """Delete raw samples older than ``ISOTOPE_METRICS_RAW_HOURS`` and rollups older
    than ``ISOTOPE_METRICS_ROLLUP_DAYS``. Returns ``(samples, rollups)`` deleted."""
    now = now or timezone.now()
    raw_cutoff = now - timedelta(hours=settings.ISOTOPE_METRICS_RAW_HOURS)
    rollup_cutoff = now - timedelta(days=settings.ISOTOPE_METRICS_ROLLUP_DAYS)
    samples, _ = VMSample.objects.filter(time__lt=raw_cutoff).delete()
    rollups, _ = VMRollup.objects.filter(time__lt=rollup_cutoff).delete()
    return samples, rollups


def metrics_hosts() -> list[int]:
    """Ids of the hosts to collect from: enabled, reachable, with the metrics capability."""
    hosts = Host.objects.filter(enabled=True, reachable=True).only("id", "capabilities")
    return [host.pk for host in hosts if host.can("metrics")]


__all__ = [
    "Collection",
    "metrics_collect",
    "metrics_hosts",
    "metrics_prune",
    "metrics_rollup",
    "point_of",
]
