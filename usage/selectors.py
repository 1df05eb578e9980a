"""Reads for usage: a tenant's report over a period, prices, the platform's monthly
report, quota requests. Tenant isolation: callers resolve the tenant through
``tenants.services.tenant_access`` (``usage.view``) first; nothing here takes a slug
from a request.

A report is exact up to now: the daily rollups for the days they cover, plus the hours
the rollup has not reached yet computed from the interval log on the fly (the same
computation the rollup uses), so a VM deleted a minute ago is already in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext

from tenants.models import Tenant
from usage.choices import Metric
from usage.models import (
    AMOUNT_FIELDS,
    USED_FIELDS,
    PriceList,
    QuotaRequest,
    UsageDaily,
    UsageHourly,
    UsageSubject,
)
from usage.services.metering import (
    DAY,
    HOUR,
    SUBJECTS_PER_READ,
    amounts_between,
    hours_to_days,
    rollup_through,
)

MS_PER_HOUR = 3_600_000
# Metric → (amount field, divisor to unit-hours), in display order.
METRICS: dict[str, tuple[str, int]] = {
    Metric.VCPU_HOURS: ("cpu_millicore_ms", 1000 * MS_PER_HOUR),
    Metric.VCPU_USED_HOURS: ("cpu_used_millicore_ms", 1000 * MS_PER_HOUR),
    Metric.MEMORY_GIB_HOURS: ("memory_mib_ms", 1024 * MS_PER_HOUR),
    Metric.MEMORY_USED_GIB_HOURS: ("memory_used_mib_ms", 1024 * MS_PER_HOUR),
    Metric.STORAGE_GIB_HOURS: ("storage_gib_ms", MS_PER_HOUR),
    Metric.VM_HOURS: ("vm_ms", MS_PER_HOUR),
    Metric.POD_HOURS: ("pod_ms", MS_PER_HOUR),
}
PRICED = {
    Metric.VCPU_HOURS: "vcpu_hour",
    Metric.MEMORY_GIB_HOURS: "memory_gib_hour",
    Metric.STORAGE_GIB_HOURS: "storage_gib_hour",
    Metric.VM_HOURS: "vm_hour",
    Metric.POD_HOURS: "pod_hour",
}
QUANTITY = Decimal("0.000001")
MONEY = Decimal("0.01")
MAX_PERIOD_DAYS = 400
NO_LABELS = "(no labels)"


def metric_label(metric: str) -> str:
    return str(Metric(metric).label)


def to_hours(amounts: list[int] | dict[str, int]) -> dict[str, Decimal]:
    """Exact integer amounts → unit-hours (six decimals) per metric."""
    if isinstance(amounts, list):
        amounts = dict(zip(AMOUNT_FIELDS, amounts, strict=True))
    return {
        metric: (Decimal(amounts[name]) / divisor).quantize(QUANTITY)
        for metric, (name, divisor) in METRICS.items()
    }


def _add(target: list[int], values) -> None:
    for index, value in enumerate(values):
        target[index] += value


def _zeros() -> list[int]:
    return [0] * len(AMOUNT_FIELDS)


# --- Prices --------------------------------------------------------------------------------
def price_lists_for(tenant_id: int | None, start: date, end: date) -> list[PriceList]:
    """The lists that may price ``tenant_id``'s usage between ``start`` and ``end``."""
    scope = Q(applies_to_all=True)
    if tenant_id is not None:
        scope |= Q(tenants__id=tenant_id)
    lists = (
        PriceList.objects.filter(scope, effective_from__lte=end)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gte=start))
        .distinct()
    )
    result = list(lists)
    assigned = set()
    if tenant_id is not None:
        assigned = set(
            PriceList.tenants.through.objects.filter(tenant_id=tenant_id).values_list(
                "pricelist_id", flat=True
            )
        )
    for price_list in result:
        price_list.assigned = price_list.pk in assigned
    return result


def price_on(lists: list[PriceList], day: date) -> PriceList | None:
    """The list that prices ``day``: the tenant's own in effect, else one for all; the
    latest to take effect wins."""
    current = [
        p
        for p in lists
        if p.effective_from <= day and (p.effective_to is None or p.effective_to >= day)
    ]
    for wanted in (True, False):
        chosen = [p for p in current if getattr(p, "assigned", False) is wanted]
        if chosen:
            return max(chosen, key=lambda p: (p.effective_from, p.pk))
    return None


def cost_of(hours: dict[str, Decimal], price_list: PriceList | None) -> Decimal | None:
    if price_list is None:
        return None
    return sum(
        (hours[metric] * getattr(price_list, name) for metric, name in PRICED.items()),
        Decimal(0),
    )


# --- A tenant's report -----------------------------------------------------------------------
@dataclass
class Line:
    """One row of a breakdown: unit-hours per metric and cost per currency."""

    key: str
    label: str
    hours: dict[str, Decimal]
    cost: dict[str, Decimal] = field(default_factory=dict)
    kind: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    amounts: list[int] = field(default_factory=list, repr=False)

    @property
    def weight(self) -> tuple:
        money = sum(self.cost.values(), Decimal(0))
        return (money, self.hours[Metric.VCPU_HOURS], self.hours[Metric.MEMORY_GIB_HOURS])

    def as_dict(self) -> dict:
        data = {
            "key": self.key,
            "label": self.label,
            "usage": {m: float(v) for m, v in self.hours.items()},
            "cost": {c: str(v.quantize(MONEY, ROUND_HALF_UP)) for c, v in self.cost.items()},
        }
        if self.kind:
            data["kind"] = self.kind
            data["labels"] = self.labels
        return data


@dataclass
class UsageReport:
    tenant: str
    tenant_id: int
    start: date
    end: date
    generated: datetime
    totals: Line
    days: list[Line]
    by_kind: list[Line]
    by_subject: list[Line]
    by_label: list[Line]
    currencies: list[str]
    priced: bool
    price_lists: list[PriceList] = field(default_factory=list, repr=False)

    def top(self, count: int = 10) -> list[Line]:
        return self.by_subject[:count]

    def as_dict(self) -> dict:
        return {
            "tenant": self.tenant,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "generated": self.generated.isoformat().replace("+00:00", "Z"),
            "units": {m: str(Metric(m).label) for m in METRICS},
            "priced": self.priced,
            "currencies": self.currencies,
            "totals": self.totals.as_dict(),
            "days": [d.as_dict() for d in self.days],
            "byKind": [k.as_dict() for k in self.by_kind],
            "bySubject": [s.as_dict() for s in self.by_subject],
            "byLabel": [label.as_dict() for label in self.by_label],
        }


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def _tail(
    tenant_id: int, start: date, end: date, now: datetime
) -> dict[tuple[int, date], list[int]]:
    """Amounts per (subject, day) of the hours the rollup has not reached yet, computed
    from the interval log (the rollup's own computation), up to ``now``."""
    through = rollup_through()
    begin = _day_start(start)
    finish = min(_day_start(end + timedelta(days=1)), now)
    tail_start = max(through, begin) if through is not None else begin
    rows: dict[tuple[int, date], list[int]] = {}
    if tail_start >= finish:
        return rows
    # A few hours normally; per day when long (a rollup that has not run for days).
    bucket = HOUR if finish - tail_start <= timedelta(hours=48) else DAY
    tail = hours_to_days(
        amounts_between(tail_start, finish, now=now, tenant_id=tenant_id, bucket=bucket)
    )
    # Used figures a deleted VM left (used_flush) for hours not rolled up yet.
    flushed = UsageHourly.objects.filter(
        tenant_id=tenant_id, hour__gte=tail_start, hour__lt=finish, samples__gt=0
    ).values_list("subject_id", "hour", *USED_FIELDS)
    for subject_id, hour, *used in flushed:
        values = tail[(subject_id, hour.date())]
        if not values["samples"]:
            for name, value in zip(USED_FIELDS, used, strict=True):
                values[name] += value
    for key, values in tail.items():
        rows[key] = [values[name] for name in AMOUNT_FIELDS]
    return rows


def usage_rows(
    tenant_id: int, start: date, end: date, *, now: datetime | None = None
) -> dict[tuple[int, date], list[int]]:
    """Exact amounts per (subject, day) of ``tenant_id`` for days ``start``..``end``
    (inclusive): rolled-up days, plus the not yet rolled-up hours up to ``now``."""
    now = now or timezone.now()
    rows: dict[tuple[int, date], list[int]] = {}
    daily = UsageDaily.objects.filter(tenant_id=tenant_id, day__gte=start, day__lte=end)
    for subject_id, day, *values in daily.values_list("subject_id", "day", *AMOUNT_FIELDS):
        rows[(subject_id, day)] = list(values)
    for key, values in _tail(tenant_id, start, end, now).items():
        _add(rows.setdefault(key, _zeros()), values)
    return rows


SUMS = {f"s_{name}": Sum(name) for name in AMOUNT_FIELDS}


def _summed(row: dict) -> list[int]:
    return [row[f"s_{name}"] or 0 for name in AMOUNT_FIELDS]


def _list_ranges(lists: list[PriceList], start: date, end: date):
    """Consecutive days priced by the same list: ``[(first, last, list or None)]``."""
    ranges: list[list] = []
    cursor = start
    while cursor <= end:
        chosen = price_on(lists, cursor)
        if ranges and ranges[-1][2] is chosen:
            ranges[-1][1] = cursor
        else:
            ranges.append([cursor, cursor, chosen])
        cursor += timedelta(days=1)
    return [tuple(r) for r in ranges]


def usage_report(
    tenant: Tenant, *, start: date, end: date, now: datetime | None = None
) -> UsageReport:
    """The tenant's usage from ``start`` to ``end`` (inclusive, UTC days): totals, per
    day, per kind, per subject (top consumers first), per label; cost where a price
    list applies. The database sums the daily rollups (per day, and per subject within
    each stretch of days one price list covers); the hours not rolled up yet are added
    from the interval log."""
    now = now or timezone.now()
    lists = price_lists_for(tenant.pk, start, end)
    ranges = _list_ranges(lists, start, end)
    list_of_day = {}
    for first, last, price_list in ranges:
        cursor = first
        while cursor <= last:
            list_of_day[cursor] = price_list
            cursor += timedelta(days=1)
    daily = UsageDaily.objects.filter(tenant_id=tenant.pk, day__gte=start, day__lte=end)
    per_day: dict[date, list[int]] = {
        row["day"]: _summed(row) for row in daily.values("day").annotate(**SUMS)
    }
    per_subject: dict[tuple[int, int | None], list[int]] = {}
    for first, last, price_list in ranges:
        in_range = daily.filter(day__gte=first, day__lte=last).values("subject_id").annotate(**SUMS)
        for row in in_range:
            per_subject[(row["subject_id"], price_list.pk if price_list else None)] = _summed(row)
    for (subject_id, day), values in _tail(tenant.pk, start, end, now).items():
        _add(per_day.setdefault(day, _zeros()), values)
        chosen = list_of_day.get(day)
        _add(per_subject.setdefault((subject_id, chosen.pk if chosen else None), _zeros()), values)

    by_id = {p.pk: p for p in lists}
    subjects = {}
    ids = sorted({key[0] for key in per_subject})
    # In slices: one statement carries at most 65,535 values (portal/postgresql), and a
    # year of a busy pool's VMs can be more subjects than that.
    for at in range(0, len(ids), SUBJECTS_PER_READ):
        for pk, ref, name, kind, labels in UsageSubject.objects.filter(
            pk__in=ids[at : at + SUBJECTS_PER_READ]
        ).values_list("pk", "ref", "name", "kind", "labels"):
            subjects[pk] = (ref, name or ref, kind, labels or {})

    def priced_line(key: str, label: str, parts: list[tuple[list[int], PriceList | None]]):
        total = _zeros()
        cost: dict[str, Decimal] = {}
        for values, price_list in parts:
            _add(total, values)
            if price_list is not None:
                amount = cost_of(to_hours(values), price_list)
                cost[price_list.currency] = cost.get(price_list.currency, Decimal(0)) + amount
        return Line(key=key, label=label, hours=to_hours(total), cost=cost, amounts=total)

    days = []
    cursor = start
    while cursor <= end:
        values = per_day.get(cursor, _zeros())
        days.append(
            priced_line(cursor.isoformat(), cursor.isoformat(), [(values, list_of_day[cursor])])
        )
        cursor += timedelta(days=1)
    grouped: dict[int, list[tuple[list[int], PriceList | None]]] = defaultdict(list)
    for (subject_id, list_id), values in per_subject.items():
        grouped[subject_id].append((values, by_id.get(list_id)))
    by_subject = []
    for subject_id, parts in grouped.items():
        ref, name, kind, labels = subjects[subject_id]
        line = priced_line(ref, name, parts)
        line.kind = kind
        line.labels = dict(labels)
        by_subject.append(line)
    by_subject.sort(key=lambda line: line.weight, reverse=True)
    totals = sum_lines("total", "Total", days)
    by_kind = _group(by_subject, lambda line: [line.kind])
    by_label = _group(
        by_subject,
        lambda line: [f"{k}={v}" for k, v in sorted(line.labels.items())] or [NO_LABELS],
    )
    currencies = sorted({c for line in days for c in line.cost})
    return UsageReport(
        tenant=tenant.slug,
        tenant_id=tenant.pk,
        start=start,
        end=end,
        generated=now,
        totals=totals,
        days=days,
        by_kind=by_kind,
        by_subject=by_subject,
        by_label=by_label,
        currencies=currencies,
        priced=bool(currencies),
        price_lists=lists,
    )


def sum_lines(key: str, label: str, lines: list[Line]) -> Line:
    """One line adding up ``lines``: their exact amounts (then rounded once) and their
    cost per currency."""
    amounts = _zeros()
    cost: dict[str, Decimal] = {}
    for line in lines:
        _add(amounts, line.amounts or _zeros())
        for currency, value in line.cost.items():
            cost[currency] = cost.get(currency, Decimal(0)) + value
    return Line(key=key, label=label, hours=to_hours(amounts), cost=cost, amounts=amounts)


def _group(lines: list[Line], keys) -> list[Line]:
    groups: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        for key in keys(line):
            groups[key].append(line)
    result = [sum_lines(key, key, members) for key, members in groups.items()]
    result.sort(key=lambda line: line.weight, reverse=True)
    return result


def report_csv_rows(report: UsageReport):
    """One CSV row per subject and day (the header first), cost by that day's list."""
    lists = report.price_lists
    rows = usage_rows(report.tenant_id, report.start, report.end, now=report.generated)
    subjects = UsageSubject.objects.in_bulk({subject_id for subject_id, _ in rows})
    yield [
        "date",
        "tenant",
        "kind",
        "name",
        "ref",
        "labels",
        *[Metric(m).label for m in METRICS],
        "cost",
        "currency",
    ]
    for (subject_id, day), values in sorted(rows.items(), key=lambda item: item[0][::-1]):
        subject = subjects.get(subject_id)
        hours = to_hours(values)
        price_list = price_on(lists, day)
        cost = cost_of(hours, price_list)
        yield [
            day.isoformat(),
            report.tenant,
            subject.kind if subject else "",
            subject.display_name if subject else "",
            subject.ref if subject else "",
            ";".join(f"{k}={v}" for k, v in sorted((subject.labels or {}).items()))
            if subject
            else "",
            *[str(hours[m]) for m in METRICS],
            str(cost.quantize(MONEY, ROUND_HALF_UP)) if cost is not None else "",
            price_list.currency if price_list else "",
        ]


def parse_period(
    start: str | None, end: str | None, *, today: date | None = None, strict: bool = False
):
    """``(start, end, errors)`` from ISO dates; defaults: this month so far. An empty
    value means the default on pages (a cleared date field), an error in the API
    (``strict``)."""
    today = today or timezone.now().date()
    errors: dict[str, list[str]] = {}

    def one(name: str, value: str | None, default: date) -> date:
        if value is None or (value == "" and not strict):
            return default
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            errors[name] = [gettext("A date as YYYY-MM-DD.")]
            return default

    first = one("start", start, today.replace(day=1))
    last = one("end", end, today)
    if not errors:
        if last < first:
            errors["end"] = [gettext("On or after the start.")]
        elif (last - first).days + 1 > MAX_PERIOD_DAYS:
            errors["end"] = [gettext("At most %(days)s days at once.") % {"days": MAX_PERIOD_DAYS}]
    return first, last, errors


# --- The platform's monthly report ----------------------------------------------------------
@dataclass
class TenantMonth:
    slug: str
    tenant_id: int | None
    name: str
    hours: dict[str, Decimal]
    cost: dict[str, Decimal]

    @property
    def deleted(self) -> bool:
        return self.tenant_id is None


def month_bounds(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def monthly_report(month: date) -> list[TenantMonth]:
    """Every tenant's usage and cost in ``month`` (from the daily rollups), deleted
    tenants included (by their slug), largest first."""
    first, last = month_bounds(month)
    sums = (
        UsageDaily.objects.filter(day__gte=first, day__lte=last)
        .values("tenant_id", "subject__tenant_slug", "day")
        .annotate(**{f"s_{name}": Sum(name) for name in AMOUNT_FIELDS})
    )
    per_tenant: dict[tuple[int | None, str], list[tuple[date, list[int]]]] = defaultdict(list)
    for row in sums:
        values = [row[f"s_{name}"] or 0 for name in AMOUNT_FIELDS]
        per_tenant[(row["tenant_id"], row["subject__tenant_slug"])].append((row["day"], values))
    names = dict(Tenant.objects.values_list("pk", "name"))
    result = []
    for (tenant_id, slug), days in per_tenant.items():
        lists = price_lists_for(tenant_id, first, last)
        total = _zeros()
        cost: dict[str, Decimal] = {}
        for day, values in days:
            _add(total, values)
            price_list = price_on(lists, day)
            amount = cost_of(to_hours(values), price_list)
            if amount is not None:
                cost[price_list.currency] = cost.get(price_list.currency, Decimal(0)) + amount
        result.append(
            TenantMonth(
                slug=slug,
                tenant_id=tenant_id,
                name=names.get(tenant_id, slug) if tenant_id else slug,
                hours=to_hours(total),
                cost=cost,
            )
        )
    result.sort(key=lambda t: (t.hours[Metric.VCPU_HOURS], t.slug), reverse=True)
    return result


def monthly_csv_rows(month: date, lines: list[TenantMonth]):
    yield ["month", "tenant", "deleted", *[Metric(m).label for m in METRICS], "cost", "currency"]
    for line in lines:
        costs = sorted(line.cost.items()) or [("", None)]
        for currency, amount in costs:
            yield [
                month.strftime("%Y-%m"),
                line.slug,
                "yes" if line.deleted else "no",
                *[str(line.hours[m]) for m in METRICS],
                str(amount.quantize(MONEY, ROUND_HALF_UP)) if amount is not None else "",
                currency,
            ]


def daily_history(tenant: Tenant, *, days: int = 30, now: datetime | None = None) -> list[Line]:
    """The tenant's last ``days`` days (for the quota request review in admin)."""
    now = now or timezone.now()
    end = now.date()
    return usage_report(tenant, start=end - timedelta(days=days - 1), end=end, now=now).days


# --- Quota requests ---------------------------------------------------------------------------
def quota_requests_of(tenant: Tenant, *, limit: int = 10) -> list[QuotaRequest]:
    """The tenant's latest quota requests, pending first."""
    pending = list(QuotaRequest.objects.filter(tenant=tenant, state="Pending"))
    decided = list(QuotaRequest.objects.filter(tenant=tenant).exclude(state="Pending")[:limit])
    return (pending + decided)[:limit]


def quota_requests_visible(tenant: Tenant) -> QuerySet[QuotaRequest]:
    return QuotaRequest.objects.filter(tenant=tenant).order_by("-created", "-id")
