"""Metering: the usage interval log and its hourly and daily rollups.

- :func:`interval_open` / :func:`interval_close` run inside the quota ledger's
  transaction (``portal.signals.ledger_changed``): a reservation's life becomes one
  interval with its size, closed when it is released. A resize (release + reserve of the
  same ref) closes one interval and opens the next; a migration, a restart or a retried
  task does not touch the ledger, so it does not touch the log either. Nothing is
  metered twice because an interval exists once per reservation (unique) and is closed
  once (``end IS NULL`` in the update).
- :func:`usage_rollup` (beat) turns the log into ``UsageHourly`` rows for every closed
  hour and sums them into ``UsageDaily`` rows. Each run recomputes the last
  ``ISOTOPE_USAGE_RECOMPUTE_HOURS`` hours too (rows are replaced, never incremented), so a
  run that died half-way, ran twice or raced a slow ledger transaction leaves the same
  figures as one clean run.
- Used amounts come from the VM metrics (``monitoring.VMSample``: CPU busy share and
  memory used, one sample per ``ISOTOPE_METRICS_SECONDS``). Samples go with their VM,
  so :func:`used_flush` keeps a VM's figures for the hours not yet rolled up just
  before its row is deleted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from portal import sql
from portal.failpoints import failpoint
from tenants.choices import ReservationKind
from tenants.models import Reservation
from usage.models import (
    ALLOCATED_FIELDS,
    AMOUNT_FIELDS,
    USED_FIELDS,
    RollupState,
    UsageDaily,
    UsageHourly,
    UsageInterval,
    UsageSubject,
)

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ROLLUP = "hourly"


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- Time ----------------------------------------------------------------------------
def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC clock hour containing ``moment``."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    """The start of the UTC day containing ``moment``."""
    return floor_hour(moment).replace(hour=0)


def _ms(moment: datetime) -> int:
    """Milliseconds since the epoch, floored: pieces of an interval cut at hour
    boundaries add up to exactly the whole."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# --- The interval log (inside the ledger's transaction) ---------------------------------
def metered(reservation: Reservation) -> bool:
    """Whether the meter counts ``reservation``: not a network's, which holds only the
    ``networks`` count (there are no network-hours)."""
    return reservation.kind != ReservationKind.NETWORK


def interval_open(
    *,
    reservation: Reservation,
    name: str = "",
    labels: dict | None = None,
    new_ref: bool = False,
) -> UsageInterval:
    """Start metering ``reservation`` at its creation time, with its size. ``name`` and
    ``labels``: the object's, when the ledger's caller knew them (otherwise they are
    read from the object once the transaction has committed). ``new_ref``: the ref was
    made for this reservation (a new object's uid), so no subject holds it yet."""
    # A reservation opens once (quota_reserve returns a live one unchanged without
    # signalling); the unique constraint on reservation_id backs that up.
    interval = UsageInterval(
        tenant_id=reservation.tenant_id,
        start=reservation.created,
        cpu=reservation.cpu,
        memory=reservation.memory,
        storage=reservation.storage,
        vms=reservation.vms,
        pods=reservation.pods,
    )
    subject = None if new_ref else _subject_known(reservation, name=name, labels=labels)
    # A new subject and its first interval: one statement (portal.sql), or part of the
    # caller's batch, which may hold the reservation too (its key comes with it).
    with sql.batch():
        if subject is None:
            subject = sql.insert_later(_subject_new(reservation, name=name, labels=labels))
        sql.insert_later(interval, keys={"subject_id": subject, "reservation_id": reservation})
    if not name:
        # The object is usually created after its reservation, in the same transaction:
        # learn its name and labels once that has committed.
        transaction.on_commit(lambda: subject_describe(subject_id=subject.pk), robust=True)
    return interval


def interval_close(*, reservation: Reservation, at: datetime | None = None) -> int:
    """Stop metering ``reservation`` at its release time (or ``at``). Returns 1 when an
    open interval was closed, 0 when there was none (closed already)."""
    end = at or reservation.released or timezone.now()
    closed = UsageInterval.objects.filter(reservation_id=reservation.pk, end__isnull=True).update(
        end=end
    )
    failpoint("usage.interval.closed")
    if closed:
        # The object still exists here (its row goes after its quota): copy its name
        # and labels while we can.
        subject = UsageSubject.objects.filter(ref=reservation.ref).first()
        if subject is not None:
            subject_describe(subject_id=subject.pk)
    return closed


def _described(name: str, labels: dict | None) -> dict:
    return {"name": name[:253], "labels": _plain_labels(labels)} if name else {}


def _subject_known(reservation: Reservation, name: str = "", labels: dict | None = None):
    """The subject of the reservation's ref, if one holds it (described anew when the
    caller knows the object's name), or None."""
    # No get_or_create (and its savepoint): two reservations of one ref are serialised
    # by the quota row lock the ledger holds, so nobody else creates it meanwhile.
    subject = UsageSubject.objects.filter(ref=reservation.ref).first()
    described = _described(name, labels)
    if subject is not None and described:
        if (subject.name, subject.labels) != (name, described["labels"]):
            UsageSubject.objects.filter(pk=subject.pk).update(**described)
    return subject


def _subject_new(reservation: Reservation, name: str = "", labels: dict | None = None):
    """The subject a reservation's ref gets, not saved yet."""
    return UsageSubject(
        ref=reservation.ref,
        tenant_id=reservation.tenant_id,
        tenant_slug=reservation.tenant.slug,
        kind=reservation.kind,
        object_id=reservation.object_id,
        **_described(name, labels),
    )


def _plain_labels(labels) -> dict[str, str]:
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


# --- Names and labels ---------------------------------------------------------------------
_models_by_prefix: dict[str, type] | None = None


def _ref_models() -> dict[str, type]:
    """Ref prefix (``vm``, ``workload``, ``image``, ...) → the model holding such refs.

    Found, not listed: any model with a ``uid`` field and a ``quota_ref`` property
    (``"<prefix>:<uid>"``) is known, so a new resource kind that reserves quota is
    described without code here."""
    global _models_by_prefix
    if _models_by_prefix is None:
        found: dict[str, type] = {}
        for model in apps.get_models():
            if not isinstance(getattr(model, "quota_ref", None), property):
                continue
            try:
                model._meta.get_field("uid")
                ref = model(uid="00000000-0000-0000-0000-000000000000").quota_ref
            except Exception:  # noqa: BLE001, S112 - a model whose ref needs more than a uid
                continue
            found[str(ref).split(":", 1)[0]] = model
        _models_by_prefix = found
    return _models_by_prefix


def subject_object(subject: UsageSubject):
    """The live object behind ``subject``, or None when it is gone (or unknown)."""
    prefix, _, uid = subject.ref.partition(":")
    model = _ref_models().get(prefix)
    if model is None or not uid:
        return None
    try:
        return model._default_manager.filter(uid=uid).first()
    except Exception:  # noqa: BLE001 - a ref whose id is not a uuid
        return None


def subject_describe(*, subject_id: int) -> UsageSubject | None:
    """Copy the name and labels of the subject's object while it exists."""
    subject = UsageSubject.objects.filter(pk=subject_id).first()
    if subject is None:
        return None
    obj = subject_object(subject)
    if obj is None:
        return subject
    name = str(getattr(obj, "name", "") or "")[:253]
    labels = _plain_labels(getattr(obj, "labels", None))
    if (subject.name, subject.labels) != (name, labels):
        UsageSubject.objects.filter(pk=subject.pk).update(name=name, labels=labels)
        subject.name, subject.labels = name, labels
    return subject


# --- Amounts over a time range ---------------------------------------------------------
@dataclass
class Amounts:
    """Exact integer amounts (size × milliseconds) of one subject in one hour."""

    tenant_id: int | None = None
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AMOUNT_FIELDS, 0))

    def add(self, other: dict[str, int]) -> None:
        for name, value in other.items():
            self.values[name] += value


def amounts_between(
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
    tenant_id: int | None = None,
    subject_ids: Iterable[int] | None = None,
    bucket: timedelta = HOUR,
) -> dict[tuple[int, datetime], Amounts]:
    """Allocated and used amounts per (subject, hour) — or per (subject, day) with
    ``bucket=DAY`` — for ``[start, end)``, from the interval log and the raw VM samples;
    an open interval counts up to ``now``."""
    floor = floor_day if bucket == DAY else floor_hour
    now = now or timezone.now()
    end = min(end, now)
    result: dict[tuple[int, datetime], Amounts] = {}
    if end <= start:
        return result
    intervals = UsageInterval.objects.filter(start__lt=end).filter(
        Q(end__isnull=True) | Q(end__gt=start)
    )
    if tenant_id is not None:
        intervals = intervals.filter(tenant_id=tenant_id)
    if subject_ids is not None:
        intervals = intervals.filter(subject_id__in=list(subject_ids))
    rows = intervals.values_list(
        "subject_id", "tenant_id", "start", "end", "cpu", "memory", "storage", "vms", "pods"
    )
    for subject_id, owner, begin, finish, cpu, memory, storage, vms, pods in rows.iterator(
        chunk_size=5000
    ):
        lo = max(begin, start)
        hi = min(finish or now, end)
        if hi <= lo:
            continue
        sizes = (int(cpu * 1000), memory, storage, vms, pods)
        slot = floor(lo)
        while slot < hi:
            piece = _ms(min(slot + bucket, hi)) - _ms(max(slot, lo))
            if piece > 0:
                amounts = result.setdefault((subject_id, slot), Amounts(tenant_id=owner))
                values = amounts.values
                for name, size in zip(ALLOCATED_FIELDS, sizes, strict=True):
                    values[name] += size * piece
            slot += bucket
    _add_used(result, start, end, tenant_id=tenant_id, subject_ids=subject_ids, bucket=bucket)
    return result


# Subjects named in one statement, well within its 65,535 values.
SUBJECTS_PER_READ = 10_000


def _add_used(
    result: dict[tuple[int, datetime], Amounts],
    start: datetime,
    end: datetime,
    *,
    tenant_id: int | None,
    subject_ids: Iterable[int] | None,
    bucket: timedelta = HOUR,
) -> None:
    """Add what the VMs' metric samples in ``[start, end)`` say they used.

    A sample stands for one collection interval. CPU used = busy share × the vCPUs
    allocated in that hour; both used amounts are capped at the allocated ones."""
    from monitoring.models import VMSample

    samples = VMSample.objects.filter(time__gte=start, time__lt=end)
    if tenant_id is not None:
        samples = samples.filter(vm__tenant_id=tenant_id)
    subjects = None
    if subject_ids is not None:
        subjects = {
            object_id: pk
            for pk, object_id in UsageSubject.objects.filter(
                pk__in=list(subject_ids), kind="vm"
            ).values_list("pk", "object_id")
        }
        samples = samples.filter(vm__uid__in=list(subjects))
    per_hour = (
        samples.annotate(bucket=TruncDay("time") if bucket == DAY else TruncHour("time"))
        .values("vm__uid", "vm__vcpus", "vm__tenant_id", "bucket")
        .annotate(cpu=Sum("cpu_percent"), memory=Sum("memory_used_mib"), count=Count("id"))
    )
    rows = list(per_hour)
    if not rows:
        return
    if subjects is None:
        # In slices: one statement carries at most 65,535 values (portal/postgresql),
        # and a big platform samples more VMs than that in an hour.
        uids = sorted({str(row["vm__uid"]) for row in rows})
        subjects = {}
        for at in range(0, len(uids), SUBJECTS_PER_READ):
            subjects.update(
                UsageSubject.objects.filter(
                    kind="vm", object_id__in=uids[at : at + SUBJECTS_PER_READ]
                ).values_list("object_id", "pk")
            )
    sample_ms = int(float(_setting("ISOTOPE_METRICS_SECONDS", 10)) * 1000)
    for row in rows:
        subject_id = subjects.get(str(row["vm__uid"]))
        if subject_id is None:
            continue
        slot = (floor_day if bucket == DAY else floor_hour)(row["bucket"])
        amounts = result.setdefault((subject_id, slot), Amounts(tenant_id=row["vm__tenant_id"]))
        values = amounts.values
        # The vCPUs the VM held in this bucket (a resize changes them mid-way).
        millicores = (
            values["cpu_millicore_ms"] / values["vm_ms"]
            if values["vm_ms"]
            else row["vm__vcpus"] * 1000
        )
        cpu_used = round((row["cpu"] or 0) / 100 * millicores * sample_ms)
        memory_used = round((row["memory"] or 0) * sample_ms)
        if values["vm_ms"]:
            cpu_used = min(cpu_used, values["cpu_millicore_ms"])
            memory_used = min(memory_used, values["memory_mib_ms"])
        values["cpu_used_millicore_ms"] = max(cpu_used, 0)
        values["memory_used_mib_ms"] = max(memory_used, 0)
        values["samples"] = row["count"]


# --- Rollups ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RollupResult:
    hours: int
    hourly_rows: int
    days: list[date]
    through: datetime | None


def rollup_through() -> datetime | None:
    """Every hour before this has been rolled up (None before the first rollup)."""
    return RollupState.objects.filter(name=ROLLUP).values_list("through", flat=True).first()


def usage_rollup(*, now: datetime | None = None) -> RollupResult:
    """Roll every closed hour not yet rolled up (and the last few again) into hourly
    rows, and their days into daily rows; then apply retention.

    An hour counts as closed ``ISOTOPE_USAGE_ROLLUP_LAG_SECONDS`` (120) after it ends,
    so ledger transactions that began in it have committed. Work goes one UTC day at a
    time, each in one transaction that also advances the watermark: a worker killed
    half-way loses that day's work, never doubles it; running it twice is harmless.
    """
    now = now or timezone.now()
    lag = timedelta(seconds=float(_setting("ISOTOPE_USAGE_ROLLUP_LAG_SECONDS", 120)))
    again = timedelta(hours=int(_setting("ISOTOPE_USAGE_RECOMPUTE_HOURS", 3)))
    until = floor_hour(now - lag)
    keep_hourly_from = now - timedelta(days=int(_setting("ISOTOPE_USAGE_HOURLY_DAYS", 35)))
    RollupState.objects.get_or_create(name=ROLLUP)
    through = rollup_through()
    if through is not None:
        begin = through - again
    else:
        first = UsageInterval.objects.aggregate(first=Min("start"))["first"]
        if first is None:
            return RollupResult(0, 0, [], None)
        begin = floor_hour(first)
    begin = floor_hour(begin)
    hours = rows = 0
    days: list[date] = []
    day_start = begin
    while day_start < until:
        day_end = min(
            datetime.combine(day_start.date() + timedelta(days=1), datetime.min.time(), UTC),
            until,
        )
        with transaction.atomic():
            state = RollupState.objects.select_for_update().get(name=ROLLUP)
            if day_end <= keep_hourly_from:
                # Older than hourly rows are kept: straight into the daily rows.
                rows += _rollup_day_from_log(day_start, day_end, now=now)
                failpoint("usage.rollup.after_hour")
            else:
                rows += _rollup_hours(day_start, day_end, now=now)
                failpoint("usage.rollup.after_hour")
                _rollup_day(day_start.date())
            hours += int((day_end - day_start) / HOUR)
            if state.through is None or state.through < day_end:
                state.through = day_end
                state.save(update_fields=["through", "updated"])
        days.append(day_start.date())
        day_start = day_end
    if hours:
        usage_prune(now=now)
    _describe_unnamed()
    return RollupResult(hours, rows, days, rollup_through())


def _describe_unnamed(limit: int = 500) -> None:
    """Name the subjects still unnamed (metered before their object committed, or
    back-filled from the ledger's history) while their object exists."""
    ids = (
        UsageSubject.objects.filter(name="", intervals__end__isnull=True)
        .values_list("pk", flat=True)
        .distinct()[:limit]
    )
    for subject_id in list(ids):
        subject_describe(subject_id=subject_id)


def _rollup_hours(start: datetime, end: datetime, *, now: datetime) -> int:
    """Write the hourly rows of the closed hours in ``[start, end)`` (replacing what a
    run wrote before): one pass over the log and the samples for all of them."""
    computed = amounts_between(start, end, now=now)
    allocated = []
    used = []
    for (subject_id, hour), amounts in computed.items():
        values = amounts.values
        row = UsageHourly(subject_id=subject_id, tenant_id=amounts.tenant_id, hour=hour, **values)
        if any(values[name] for name in ALLOCATED_FIELDS):
            allocated.append(row)
        if values["samples"]:
            used.append(row)
    # Two upserts: allocated amounts always follow the log, used amounts only where
    # samples exist, so a deleted VM keeps what used_flush saved for it.
    if allocated:
        UsageHourly.objects.bulk_create(
            allocated,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["subject", "hour"],
            update_fields=["tenant", *ALLOCATED_FIELDS],
        )
    if used:
        UsageHourly.objects.bulk_create(
            used,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["subject", "hour"],
            update_fields=USED_FIELDS,
        )
    return len(computed)


def _rollup_day_from_log(start: datetime, end: datetime, *, now: datetime) -> int:
    """Daily rows of one whole day straight from the log (a catch-up of days older
    than the hourly retention: their hourly rows would be pruned at once)."""
    computed = amounts_between(start, end, now=now, bucket=DAY)
    rows = [
        UsageDaily(
            subject_id=subject_id, tenant_id=amounts.tenant_id, day=slot.date(), **amounts.values
        )
        for (subject_id, slot), amounts in computed.items()
    ]
    if rows:
        UsageDaily.objects.bulk_create(
            rows,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["subject", "day"],
            update_fields=["tenant", *ALLOCATED_FIELDS],
        )
    return len(rows)


def _rollup_day(day: date) -> int:
    """Sum the hourly rows of ``day`` into daily rows (replacing earlier sums)."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    sums = (
        UsageHourly.objects.filter(hour__gte=start, hour__lt=start + timedelta(days=1))
        .values("subject_id", "tenant_id")
        .annotate(**{f"sum_{name}": Sum(name) for name in AMOUNT_FIELDS})
    )
    rows = [
        UsageDaily(
            subject_id=row["subject_id"],
            tenant_id=row["tenant_id"],
            day=day,
            **{name: row[f"sum_{name}"] or 0 for name in AMOUNT_FIELDS},
        )
        for row in sums
    ]
    if rows:
        UsageDaily.objects.bulk_create(
            rows,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["subject", "day"],
            update_fields=["tenant", *AMOUNT_FIELDS],
        )
    return len(rows)


def usage_prune(*, now: datetime | None = None) -> dict[str, int]:
    """Drop hourly rows after ``ISOTOPE_USAGE_HOURLY_DAYS`` (35) and daily rows after
    ``ISOTOPE_USAGE_DAILY_DAYS`` (400). The interval log itself is kept."""
    now = now or timezone.now()
    hourly_days = int(_setting("ISOTOPE_USAGE_HOURLY_DAYS", 35))
    daily_days = int(_setting("ISOTOPE_USAGE_DAILY_DAYS", 400))
    hourly, _ = UsageHourly.objects.filter(hour__lt=now - timedelta(days=hourly_days)).delete()
    daily, _ = UsageDaily.objects.filter(day__lt=(now - timedelta(days=daily_days)).date()).delete()
    return {"hourly": hourly, "daily": daily}


# --- A VM about to be deleted ------------------------------------------------------------
def used_flush(*, vm) -> int:
    """Save what a VM used in the hours not yet rolled up, before its samples go with
    it (called when its row is deleted). Returns the hourly rows written."""
    subject = UsageSubject.objects.filter(kind="vm", object_id=str(vm.uid)).first()
    if subject is None:
        return 0
    now = timezone.now()
    again = timedelta(hours=int(_setting("ISOTOPE_USAGE_RECOMPUTE_HOURS", 3)))
    raw = timedelta(hours=int(_setting("ISOTOPE_METRICS_RAW_HOURS", 24)))
    through = rollup_through()
    start = floor_hour(max(min(through or now, now) - again, now - raw))
    computed = amounts_between(start, now, now=now, subject_ids=[subject.pk])
    rows = [
        UsageHourly(subject_id=subject_id, tenant_id=amounts.tenant_id, hour=hour, **amounts.values)
        for (subject_id, hour), amounts in computed.items()
        if amounts.values["samples"]
    ]
    if rows:
        UsageHourly.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["subject", "hour"],
            update_fields=USED_FIELDS,
        )
    return len(rows)


def hours_to_days(
    amounts: dict[tuple[int, datetime], Amounts],
) -> dict[tuple[int, date], dict[str, int]]:
    """Fold (subject, hour) amounts into (subject, UTC day) sums."""
    out: dict[tuple[int, date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(AMOUNT_FIELDS, 0)
    )
    for (subject_id, hour), piece in amounts.items():
        target = out[(subject_id, hour.date())]
        for name, value in piece.values.items():
            target[name] += value
    return out
