"""Reads for monitoring. Tenant isolation goes through ``tenants.selectors.restrict``."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from monitoring.choices import DeliveryStatus
from monitoring.models import Event, Webhook, WebhookDelivery
from tenants.models import Tenant
from tenants.selectors import restrict


def events_visible(user, tenant: Tenant) -> QuerySet[Event]:
    """The tenant's events, newest first, if ``user`` may view them (else none)."""
    return restrict(user, "event.view", Event.objects.filter(tenant=tenant)).order_by(
        "-last_seen", "-id"
    )


# Rows of an object's "Recent events" table (its page links to the whole timeline).
RECENT_EVENTS = 15


def events_of_object(user, tenant: Tenant, *, kind: str, name: str) -> list[Event]:
    """The latest events of one object (a VM's or a workload's page), newest first."""
    return list(events_visible(user, tenant).filter(kind=kind, name=name)[:RECENT_EVENTS])


def events_recent(tenant: Tenant, *, kind: str = "", name: str = "", limit: int = 50) -> list:
    """The latest events of the tenant, or of one object (for resyncs). Unrestricted:
    callers have checked access already."""
    queryset = Event.objects.filter(tenant=tenant)
    if kind:
        queryset = queryset.filter(kind=kind, name=name)
    return list(queryset.order_by("-last_seen", "-id")[:limit])


def webhooks_of(tenant: Tenant) -> QuerySet[Webhook]:
    """The tenant's webhooks with delivery counts per status."""
    return (
        Webhook.objects.filter(tenant=tenant)
        .select_related("created_by")
        .annotate(
            delivered=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.SUCCEEDED)),
            pending=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
            failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
        )
        .order_by("created", "id")
    )


def deliveries_recent(tenant: Tenant, *, limit: int = 50) -> list[WebhookDelivery]:
    """The tenant's latest webhook deliveries, with their webhook and event."""
    return list(
        WebhookDelivery.objects.filter(webhook__tenant=tenant)
        .select_related("webhook", "event")
        .order_by("-created", "-id")[:limit]
    )


# --- Metrics -----------------------------------------------------------------------------
# Chart ranges: (seconds, source). One hour of raw 10-second samples; longer ranges
# read the 5-minute rollups.
METRIC_RANGES = {
    "1h": (3600, "raw"),
    "6h": (6 * 3600, "rollup"),
    "24h": (24 * 3600, "rollup"),
    "7d": (7 * 24 * 3600, "rollup"),
}


def vm_metric_series(vm, *, window: str = "1h", now=None) -> dict:
    """One VM's metric points over ``window`` (a key of ``METRIC_RANGES``), oldest first:
    ``{"range", "step", "points": [{"t": ms, "cpu", "mem", "rd", "wr", "rx", "tx"}]}``.
    Unrestricted: the caller has resolved ``vm`` through ``compute.selectors.vm_get``."""
    from monitoring.collector import ROLLUP_SECONDS, point_of
    from monitoring.models import VMRollup, VMSample

    seconds, source = METRIC_RANGES[window]
    now = now or timezone.now()
    model = VMSample if source == "raw" else VMRollup
    rows = model.objects.filter(vm=vm, time__gte=now - timedelta(seconds=seconds)).order_by("time")
    step = settings.ISOTOPE_METRICS_SECONDS if source == "raw" else ROLLUP_SECONDS
    return {"range": window, "step": step, "points": [point_of(row) for row in rows]}


def tenant_metric_totals(tenant: Tenant, *, now=None) -> dict:
    """The tenant's VMs right now: how many run, their vCPUs and how busy they are,
    memory in use and disk/network throughput, from each VM's latest collection (only
    reads younger than three collection intervals count)."""
    return tenants_metric_totals([tenant.pk], now=now)[tenant.pk]


def tenants_metric_totals(tenant_ids, *, now=None) -> dict[int, dict]:
    """``tenant_metric_totals`` of many tenants (by id), with two queries for all of
    them (a collection publishes the totals of every tenant with a VM on its host)."""
    from compute.choices import Phase
    from compute.models import VirtualMachine
    from monitoring.models import VMCounters

    ids = list(tenant_ids)
    now = now or timezone.now()
    running = {
        row["tenant_id"]: row
        for row in VirtualMachine.objects.filter(tenant_id__in=ids, phase=Phase.RUNNING)
        .order_by()
        .values("tenant_id")
        .annotate(vms=Count("id"), vcpus=Sum("vcpus"))
    }
    fresh = now - timedelta(seconds=3 * settings.ISOTOPE_METRICS_SECONDS)
    usage = {
        row["vm__tenant_id"]: row
        for row in VMCounters.objects.filter(
            vm__tenant_id__in=ids, time__gte=fresh, state__in=["running", "blocked"]
        )
        .order_by()
        .values("vm__tenant_id")
        .annotate(
            busy=Sum(F("cpu_percent") * F("vm__vcpus") / 100.0),
            memory_kib=Sum("memory_used_kib"),
            disk=Sum(F("disk_read_bps") + F("disk_write_bps")),
            net=Sum(F("net_rx_bps") + F("net_tx_bps")),
        )
    }
    totals = {}
    for tenant_id in ids:
        counted = running.get(tenant_id, {})
        used = usage.get(tenant_id, {})
        vcpus = counted.get("vcpus") or 0
        busy = float(used.get("busy") or 0)
        totals[tenant_id] = {
            "vmsRunning": counted.get("vms") or 0,
            "vcpus": vcpus,
            "cpuBusyVcpus": round(busy, 2),
            "cpuPercent": round(busy / vcpus * 100, 1) if vcpus else 0.0,
            "memoryUsedMib": round((used.get("memory_kib") or 0) / 1024, 1),
            "diskBps": round(float(used.get("disk") or 0), 1),
            "netBps": round(float(used.get("net") or 0), 1),
        }
    return totals
