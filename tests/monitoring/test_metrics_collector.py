"""The metrics collector on libvirt's test driver: one bulk call per host, samples and
counters stored in bulk, rates from counter deltas, points published live; rollups and
retention."""

from __future__ import annotations

from datetime import timedelta

import libvirt
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compute.backends import backend_for_host
from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from compute.services.reconcile import domain_spec
from monitoring import collector, live, selectors
from monitoring.groups import metrics_group, tenant_group
from monitoring.models import VMCounters, VMRollup, VMSample
from tenants import services as tenant_services

pytestmark = pytest.mark.libvirt_test_driver


def running_vm(demo, host, name: str, vcpus: int = 1, *, globex: bool = False) -> VirtualMachine:
    """A VM accepted by the services whose domain runs on ``host`` (defined directly);
    in acme, or in globex."""
    actor, tenant = (demo.dave, demo.globex) if globex else (demo.bob, demo.acme)
    vm = vm_services.vm_create(
        actor=actor, tenant=tenant, name=name, image="tiny", vcpus=vcpus, memory_mib=256
    )
    backend = backend_for_host(host)
    backend.define(domain_spec(vm))
    backend.start(vm.domain_name)
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    return VirtualMachine.objects.get(pk=vm.pk)


def test_a_collection_reads_every_domain_with_one_bulk_call_and_stores_rows_in_bulk(
    demo, make_host, tiny_image, monkeypatch, django_capture_on_commit_callbacks
):
    host = make_host()
    vms = [running_vm(demo, host, f"web{i}") for i in range(3)]
    conn = shared_connection(host.uri)
    conn.defineXML(  # a domain Isotope does not know: read, but ignored
        "<domain type='test'><name>stranger</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    ).create()
    calls = []
    original = libvirt.virConnect.getAllDomainStats

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(libvirt.virConnect, "getAllDomainStats", counting)
    start = timezone.now()
    first = collector.metrics_collect(host=host, now=start)
    # The first read only keeps counters: rates need a previous read.
    assert (first.domains, first.samples) == (4, 0)
    assert VMCounters.objects.filter(host=host).count() == 3
    with CaptureQueriesContext(connection) as queries:
        with django_capture_on_commit_callbacks(execute=True):
            second = collector.metrics_collect(host=host, now=start + timedelta(seconds=10))
    assert len(calls) == 2 and conn.isAlive()
    assert second.samples == 3
    samples = VMSample.objects.filter(vm__in=vms)
    assert samples.count() == 3
    # The test driver reports only states: rates are zero, not errors.
    assert {s.cpu_percent for s in samples} == {0.0}
    sample_insert = 'INSERT INTO "monitoring_vmsample"'
    inserts = [q["sql"] for q in queries if q["sql"].startswith(sample_insert)]
    assert len(inserts) == 1, "samples must be stored with one bulk insert"
    # Each VM's metrics stream and the tenant stream got one message.
    assert live.seq_current(metrics_group("acme", "web0")) == 1
    assert live.seq_current(tenant_group("acme")) >= 1

    # Twice the VMs, in two tenants, the same statements: nothing is read VM by VM (a
    # VM's domain name comes from fields the collector reads with it) nor tenant by
    # tenant (the totals of every tenant on the host come from one query of each kind).
    vms += [running_vm(demo, host, f"api{i}", globex=True) for i in range(3)]
    with CaptureQueriesContext(connection) as more:
        with django_capture_on_commit_callbacks(execute=True):
            third = collector.metrics_collect(host=host, now=start + timedelta(seconds=20))
    assert third.samples == 3  # the new VMs' first read: counters only
    assert len(more) == len(queries), [q["sql"][:120] for q in more]
    assert live.seq_current(tenant_group("globex")) >= 1


def test_rates_come_from_counter_deltas_and_a_restart_is_not_a_negative_rate(
    demo, make_host, tiny_image
):
    host = make_host()
    vm = running_vm(demo, host, "db1", vcpus=2)
    now = timezone.now()
    VMCounters.objects.create(
        vm=vm,
        host=host,
        time=now - timedelta(seconds=10),
        state="running",
        cpu_time_ns=0,
        disk_read_bytes=0,
        net_rx_bytes=0,
    )
    stats = {
        "state": "running",
        "cpu_time_ns": 5 * 10**9,  # 5 s of CPU in 10 s on 2 vCPUs = 25 %
        "memory_used_kib": 100 * 1024,
        "disk_read_bytes": 10_000,
        "disk_write_bytes": 0,
        "net_rx_bytes": 2_000,
        "net_tx_bytes": 0,
    }
    previous = VMCounters.objects.get(vm=vm)
    rates = collector._rates(stats, previous, now, vcpus=2)
    assert rates["cpu_percent"] == pytest.approx(25.0)
    assert rates["disk_read_bps"] == pytest.approx(1000.0)
    assert rates["net_rx_bps"] == pytest.approx(200.0)
    previous.cpu_time_ns = 10 * 10**9  # the domain restarted: counters went down
    assert collector._rates(stats, previous, now, vcpus=2) is None


def test_rollups_average_five_minutes_and_pruning_keeps_the_retention(
    demo, make_host, tiny_image, settings
):
    host = make_host()
    vm = running_vm(demo, host, "app1")
    now = timezone.now().replace(microsecond=0)
    bucket = collector._floor(now) - timedelta(minutes=10)
    rows = [
        VMSample(
            vm=vm,
            time=bucket + timedelta(seconds=10 * i),
            cpu_percent=float(i),
            memory_used_mib=100,
            disk_read_bps=0,
            disk_write_bps=0,
            net_rx_bps=0,
            net_tx_bps=0,
        )
        for i in range(60)  # 10 minutes: two buckets, averages 14.5 and 44.5
    ]
    old = [
        VMSample(
            vm=vm,
            time=now - timedelta(hours=settings.ISOTOPE_METRICS_RAW_HOURS, minutes=1),
            cpu_percent=1,
            memory_used_mib=1,
            disk_read_bps=0,
            disk_write_bps=0,
            net_rx_bps=0,
            net_tx_bps=0,
        )
    ]
    VMSample.objects.bulk_create(rows + old)
    assert collector.metrics_rollup(now=now) >= 2
    rollups = list(VMRollup.objects.filter(vm=vm, time__gte=bucket).order_by("time"))
    assert [(r.time, r.samples, r.cpu_percent) for r in rollups[:2]] == [
        (bucket, 30, pytest.approx(14.5)),
        (bucket + timedelta(minutes=5), 30, pytest.approx(44.5)),
    ]
    assert collector.metrics_rollup(now=now) >= 1  # idempotent: upserts, no duplicates
    assert VMRollup.objects.filter(vm=vm, time=bucket).count() == 1
    VMRollup.objects.create(
        vm=vm,
        time=now - timedelta(days=settings.ISOTOPE_METRICS_ROLLUP_DAYS, minutes=5),
        samples=1,
        cpu_percent=0,
        memory_used_mib=0,
        disk_read_bps=0,
        disk_write_bps=0,
        net_rx_bps=0,
        net_tx_bps=0,
    )
    assert collector.metrics_prune(now=now) == (1, 1)
    assert VMSample.objects.filter(vm=vm).count() == 60
    series = selectors.vm_metric_series(vm, window="1h", now=now)
    assert len(series["points"]) == 60 and series["points"][0]["cpu"] == 0.0
    assert len(selectors.vm_metric_series(vm, window="6h", now=now)["points"]) == 2


def test_tenant_totals_add_up_the_running_vms(demo, make_host, tiny_image):
    host = make_host()
    a = running_vm(demo, host, "a1", vcpus=2)
    b = running_vm(demo, host, "b1", vcpus=2)
    now = timezone.now()
    for vm, cpu, mem in ((a, 50.0, 512 * 1024), (b, 25.0, 256 * 1024)):
        VMCounters.objects.create(
            vm=vm, host=host, time=now, state="running", cpu_percent=cpu, memory_used_kib=mem
        )
    totals = selectors.tenant_metric_totals(demo.acme, now=now)
    assert totals["vmsRunning"] == 2 and totals["vcpus"] == 4
    assert totals["cpuBusyVcpus"] == 1.5 and totals["cpuPercent"] == 37.5
    assert totals["memoryUsedMib"] == 768.0
    # Several tenants at once: each its own sums; one without VMs, zeros.
    g = running_vm(demo, host, "g1", vcpus=1, globex=True)
    VMCounters.objects.create(
        vm=g, host=host, time=now, state="running", cpu_percent=80.0, memory_used_kib=1024
    )
    empty = tenant_services.tenant_create(actor=None, slug="empty", name="Empty")
    both = selectors.tenants_metric_totals([demo.acme.pk, demo.globex.pk, empty.pk], now=now)
    assert both[demo.acme.pk] == totals
    assert both[demo.globex.pk]["vmsRunning"] == 1
    assert both[demo.globex.pk]["cpuBusyVcpus"] == 0.8
    assert both[demo.globex.pk]["memoryUsedMib"] == 1.0
    assert both[empty.pk] == {
        "vmsRunning": 0,
        "vcpus": 0,
        "cpuBusyVcpus": 0.0,
        "cpuPercent": 0.0,
        "memoryUsedMib": 0.0,
        "diskBps": 0.0,
        "netBps": 0.0,
    }
