"""``/metrics`` in the Prometheus text format, read from the database at scrape time.

:class:`IsotopeCollector` is a prometheus-client custom collector: each scrape reads
the latest VM counters (``VMCounters``), VM phases, tenant quotas and the Celery task
statistics that workers keep in Redis (:func:`task_record`, connected to Celery's
signals in ``monitoring.receivers``, because workers are separate processes). Nothing
is kept in this process' memory, so any web process answers the same.

Access: a bearer token (``ISOTOPE_METRICS_TOKEN``) or a client address in
``ISOTOPE_METRICS_ALLOW`` (CIDRs; default loopback). ``REMOTE_ADDR`` is used as is:
behind a proxy, use the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

TASK_COUNTS = "isotope:tasks:count"  # hash "<task>|<state>" → count
TASK_SECONDS = "isotope:tasks:seconds"  # hash "<task>" → total seconds
QUOTA_RESOURCES = ("cpu", "memory", "storage", "vms", "pods", "networks")

_started: dict[str, float] = {}
_started_lock = threading.Lock()


# --- Task statistics (written by workers) ------------------------------------------------
def task_started(task_id: str) -> None:
    """Remember when a task started in this worker process."""
    with _started_lock:
        _started[task_id] = time.monotonic()


def task_record(task_id: str, task_name: str, state: str) -> None:
    """Count one finished task run (``state``: SUCCESS, FAILURE, RETRY, ...) and add its
    duration. Never raises: statistics must not fail a task."""
    with _started_lock:
        began = _started.pop(task_id, None)
    try:
        from monitoring.live import redis_client

        pipe = redis_client().pipeline(transaction=False)
        pipe.hincrby(TASK_COUNTS, f"{task_name}|{state}", 1)
        if began is not None:
            pipe.hincrbyfloat(TASK_SECONDS, task_name, time.monotonic() - began)
        pipe.execute()
    except Exception:  # noqa: BLE001
        logger.warning("could not record task statistics for %s", task_name, exc_info=True)


# --- Scrape ------------------------------------------------------------------------------
class IsotopeCollector:
    """Reads the portal's state at scrape time (see the module docstring)."""

    def collect(self):
        yield from self._vms()
        yield from self._quotas()
        yield from self._tasks()

    def _vms(self):
        from compute.choices import Phase
        from compute.models import VirtualMachine
        from monitoring.models import VMCounters

        labels = ["tenant", "vm", "host"]
        cpu = CounterMetricFamily(
            "isotope_vm_cpu_seconds", "Guest CPU time used since the domain started.", labels=labels
        )
        memory = GaugeMetricFamily(
            "isotope_vm_memory_used_bytes",
            "Guest memory in use at the last collection.",
            labels=labels,
        )
        disk_read = CounterMetricFamily(
            "isotope_vm_disk_read_bytes", "Bytes read from the VM's disks.", labels=labels
        )
        disk_write = CounterMetricFamily(
            "isotope_vm_disk_written_bytes", "Bytes written to the VM's disks.", labels=labels
        )
        net_rx = CounterMetricFamily(
            "isotope_vm_network_receive_bytes", "Bytes received by the VM.", labels=labels
        )
        net_tx = CounterMetricFamily(
            "isotope_vm_network_transmit_bytes", "Bytes sent by the VM.", labels=labels
        )
        cpu_percent = GaugeMetricFamily(
            "isotope_vm_cpu_percent",
            "Busy share of the VM's vCPUs over the last collection interval.",
            labels=labels,
        )
        counters = VMCounters.objects.select_related("vm__tenant", "host")
        for row in counters.iterator(chunk_size=2000):
            values = [row.vm.tenant.slug, row.vm.name, row.host.name if row.host else ""]
            cpu.add_metric(values, row.cpu_time_ns / 1e9)
            memory.add_metric(values, row.memory_used_kib * 1024)
            disk_read.add_metric(values, row.disk_read_bytes)
            disk_write.add_metric(values, row.disk_write_bytes)
            net_rx.add_metric(values, row.net_rx_bytes)
            net_tx.add_metric(values, row.net_tx_bytes)
            cpu_percent.add_metric(values, row.cpu_percent)
        yield from (cpu, memory, disk_read, disk_write, net_rx, net_tx, cpu_percent)

        phase = GaugeMetricFamily(
            "isotope_vm_phase",
            "1 for the VM's current phase, 0 for the others.",
            labels=[*labels, "phase"],
        )
        vms = VirtualMachine.objects.select_related("tenant", "host").only(
            "name", "phase", "tenant__slug", "host__name"
        )
        for vm in vms.iterator(chunk_size=2000):
            values = [vm.tenant.slug, vm.name, vm.host.name if vm.host else ""]
            for choice in Phase.values:
                phase.add_metric([*values, choice], 1.0 if vm.phase == choice else 0.0)
        yield phase

    def _quotas(self):
        from tenants.models import Quota

        limit = GaugeMetricFamily(
            "isotope_tenant_quota_limit",
            "The tenant's quota (cpu: vCPUs, memory: MiB, storage: GiB, vms, pods).",
            labels=["tenant", "resource"],
        )
        used = GaugeMetricFamily(
            "isotope_tenant_quota_used",
            "What the tenant's resources reserve of the quota.",
            labels=["tenant", "resource"],
        )
        for quota in Quota.objects.select_related("tenant"):
            for resource in QUOTA_RESOURCES:
                limit.add_metric([quota.tenant.slug, resource], float(getattr(quota, resource)))
                used.add_metric(
                    [quota.tenant.slug, resource], float(getattr(quota, f"used_{resource}"))
                )
        yield limit
        yield used

    def _tasks(self):
        from monitoring.live import redis_client

        runs = CounterMetricFamily(
            "isotope_celery_tasks", "Celery task runs by final state.", labels=["task", "state"]
        )
        seconds = CounterMetricFamily(
            "isotope_celery_task_seconds", "Total time spent in Celery tasks.", labels=["task"]
        )
        try:
            client = redis_client()
            counts = client.hgetall(TASK_COUNTS)
            durations = client.hgetall(TASK_SECONDS)
        except Exception:  # noqa: BLE001 - the rest of the scrape is still worth having
            logger.warning("no task statistics (Redis down?)", exc_info=True)
            counts, durations = {}, {}
        for field, value in sorted(counts.items()):
            task, _, state = field.decode().rpartition("|")
            runs.add_metric([task, state], float(value))
        for field, value in sorted(durations.items()):
            seconds.add_metric([field.decode()], float(value))
        yield runs
        yield seconds


_registry = CollectorRegistry(auto_describe=False)
_registry.register(IsotopeCollector())


# --- Access and view -----------------------------------------------------------------------
def scrape_allowed(request: HttpRequest) -> tuple[bool, int]:
    """``(allowed, status_if_not)``: a valid bearer token, or an allowed client address.
    A wrong token is refused (401) even from an allowed address."""
    header = request.headers.get("Authorization", "")
    token = settings.ISOTOPE_METRICS_TOKEN
    if header:
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and token and hmac.compare_digest(given.strip(), token):
            return True, 200
        return False, 401
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False, 403
    for network in settings.ISOTOPE_METRICS_ALLOW:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True, 200
        except ValueError:
            logger.warning("ignoring invalid ISOTOPE_METRICS_ALLOW entry %r", network)
    return False, 403


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus scrape endpoint (``/metrics``)."""
    allowed, status = scrape_allowed(request)
    if not allowed:
        response = HttpResponse(
            "Forbidden: a bearer token or an allowed address is required.\n",
            status=status,
            content_type="text/plain",
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
