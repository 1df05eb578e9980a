"""``/metrics`` (protected Prometheus text), the chart series endpoint, and the pages
that show metrics."""

from __future__ import annotations

import pytest
from django.utils import timezone

from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from monitoring import prometheus
from monitoring.models import VMCounters, VMSample

pytestmark = pytest.mark.unit
TOKEN = "s3cret-scrape-token"


@pytest.fixture
def measured_vm(demo, make_host, tiny_image):
    """acme/web1 on host test1, Running, with one collection's counters and a sample."""
    host = make_host("test1")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=2, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    now = timezone.now()
    VMCounters.objects.create(
        vm=vm,
        host=host,
        time=now,
        state="running",
        cpu_time_ns=12_500_000_000,
        memory_used_kib=100 * 1024,
        disk_read_bytes=4096,
        disk_write_bytes=8192,
        net_rx_bytes=1000,
        net_tx_bytes=2000,
        cpu_percent=12.5,
    )
    VMSample.objects.create(
        vm=vm,
        time=now,
        cpu_percent=12.5,
        memory_used_mib=100,
        disk_read_bps=1,
        disk_write_bps=2,
        net_rx_bps=3,
        net_tx_bps=4,
    )
    return VirtualMachine.objects.get(pk=vm.pk)


def test_metrics_refuses_a_scraper_without_token_from_another_address(client, settings, db):
    settings.ISOTOPE_METRICS_TOKEN = TOKEN
    settings.ISOTOPE_METRICS_ALLOW = ["127.0.0.1/32"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    wrong = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    settings.ISOTOPE_METRICS_TOKEN = ""
    empty = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer ")
    assert empty.status_code == 401, "no configured token must not mean 'any token'"


def test_metrics_with_the_token_exports_vm_counters_phase_and_quotas(client, settings, measured_vm):
    settings.ISOTOPE_METRICS_TOKEN = TOKEN
    settings.ISOTOPE_METRICS_ALLOW = []
    prometheus.task_started("t-1")
    prometheus.task_record("t-1", "monitoring.tasks.metrics_collect", "SUCCESS")
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    labels = 'host="test1",tenant="acme",vm="web1"'
    for line in [
        f"isotope_vm_cpu_seconds_total{{{labels}}} 12.5",
        f"isotope_vm_memory_used_bytes{{{labels}}} 1.048576e+08",
        f"isotope_vm_disk_read_bytes_total{{{labels}}} 4096.0",
        f"isotope_vm_disk_written_bytes_total{{{labels}}} 8192.0",
        f"isotope_vm_network_receive_bytes_total{{{labels}}} 1000.0",
        f"isotope_vm_network_transmit_bytes_total{{{labels}}} 2000.0",
        'isotope_vm_phase{host="test1",phase="Running",tenant="acme",vm="web1"} 1.0',
        'isotope_vm_phase{host="test1",phase="Stopped",tenant="acme",vm="web1"} 0.0',
        'isotope_tenant_quota_limit{resource="vms",tenant="acme"} 20.0',
        'isotope_tenant_quota_used{resource="vms",tenant="acme"} 1.0',
        'isotope_tenant_quota_used{resource="cpu",tenant="acme"} 2.0',
        'isotope_tenant_quota_used{resource="vms",tenant="globex"} 0.0',
        'isotope_celery_tasks_total{state="SUCCESS",task="monitoring.tasks.metrics_collect"}',
        'isotope_celery_task_seconds_total{task="monitoring.tasks.metrics_collect"}',
    ]:
        assert line in text, f"missing: {line}"


def test_metrics_from_an_allowed_address_needs_no_token(client, settings, measured_vm):
    settings.ISOTOPE_METRICS_ALLOW = ["10.0.0.0/8"]
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200 and b"isotope_vm_phase" in response.content


def test_the_series_endpoint_follows_tenant_access(client, measured_vm, demo):
    url = "/t/acme/vms/web1/metrics/"
    client.force_login(demo.carol)  # a viewer may watch
    body = client.get(url).json()
    assert body["range"] == "1h" and body["step"] == 10
    assert body["points"][0]["cpu"] == 12.5 and body["points"][0]["mem"] == 100
    assert client.get(url + "?range=7d").json()["points"] == []
    assert client.get(url + "?range=1y").status_code == 400
    assert client.get("/t/acme/vms/nope/metrics/").status_code == 404
    client.force_login(demo.dave)  # another tenant's admin
    assert client.get(url).status_code == 404


def test_vm_detail_has_the_chart_card_and_the_overview_the_totals(client, measured_vm, demo):
    client.force_login(demo.bob)
    page = client.get("/t/acme/vms/web1/").content.decode()
    assert 'data-testid="vm-metrics"' in page
    assert '<meta name="isotope-live" content="acme/vm-metrics/web1">' in page
    assert "chart.umd.min.js" in page
    overview = client.get("/t/acme/").content.decode()
    assert 'data-testid="tenant-usage"' in overview
    assert 'data-metric-total="vmsRunning">1<' in overview
    assert 'data-metric-total="cpuBusyVcpus">0.25<' in overview
