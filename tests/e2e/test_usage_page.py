"""The usage page in the browser: a month of VMs, priced, with the daily chart, the
breakdowns and the exports."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from compute.backends import backend_for_host
from compute.services import vms as vm_services
from tenants import services as tenant_services
from tests.conftest import ARTIFACTS, login
from usage.models import PriceList
from usage.services.metering import usage_rollup

pytestmark = pytest.mark.e2e


@pytest.fixture
def month_of_usage(demo, make_host, tiny_image):
    """Over the last ten days: web1 and web2 (team=web) all along, db1 (team=data) for
    three days, a workload's three pods for two days; priced in EUR."""
    make_host("node-a")
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=9)

    def at(moment: datetime, call):
        with time_machine.travel(moment, tick=False):
            return call()

    def vm(name, vcpus, memory, disk, team):
        return vm_services.vm_create(
            actor=demo.alice,
            tenant=demo.acme,
            name=name,
            image=tiny_image,
            vcpus=vcpus,
            memory_mib=memory,
            disk_gib=disk,
            labels={"team": team},
        )

    at(start + timedelta(hours=8), lambda: vm("web1", 2, 2048, 20, "web"))
    at(start + timedelta(hours=9), lambda: vm("web2", 2, 2048, 20, "web"))
    db1 = at(start + timedelta(days=3), lambda: vm("db1", 4, 8192, 100, "data"))

    def delete(vm):  # as the delete task does once the domain is gone
        vm_services.vm_finalize_delete(vm, backend_for_host(vm.host))

    at(start + timedelta(days=6), lambda: delete(db1))

    def pods():
        with transaction.atomic():
            tenant_services.quota_reserve(
                tenant=demo.acme, ref="workload:batch", kind="workload", cpu="1.5", pods=3
            )

    at(start + timedelta(days=7), pods)
    at(start + timedelta(days=9), lambda: tenant_services.quota_release("workload:batch"))
    usage_rollup()
    prices = PriceList.objects.create(
        name="Standard",
        currency="EUR",
        effective_from=start.date(),
        vcpu_hour=Decimal("0.03"),
        memory_gib_hour=Decimal("0.004"),
        storage_gib_hour=Decimal("0.0001"),
    )
    prices.tenants.add(demo.acme)
    return start


def test_the_usage_page_charts_and_breaks_down_ten_days(
    demo, month_of_usage, live_url, new_page, axe
):
    first = month_of_usage.date()
    last = timezone.now().date()
    page = new_page(viewport={"width": 1440, "height": 1100})
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/")
    page.get_by_label("Sections").get_by_role("link", name=re.compile(r"Usage$")).click()
    page.get_by_label("From", exact=True).fill(first.isoformat())
    page.get_by_label("To", exact=True).fill(last.isoformat())
    page.get_by_role("button", name="Show").click()

    totals = page.get_by_test_id("usage-totals")
    expect(totals).to_contain_text("vCPU-hours")
    expect(page.locator('[data-usage-total="cost"]')).to_contain_text("EUR")
    top = page.get_by_test_id("usage-top")
    # 3 VMs, their 3 root volumes (a root disk is metered on its volume), the pods.
    expect(top.locator("tbody tr")).to_have_count(7)
    expect(top.locator("tbody tr").first).to_contain_text("web1")  # the longest-running
    expect(top).to_contain_text("db1")
    labels = page.get_by_test_id("usage-by-label")
    expect(labels).to_contain_text("team=web")
    expect(labels).to_contain_text("team=data")
    expect(labels).to_contain_text("(no labels)")
    expect(page.get_by_test_id("usage-by-kind")).to_contain_text("workload")
    chart = page.get_by_test_id("usage-chart")
    expect(chart).to_have_attribute("data-metric", "vcpu_hours")
    page.get_by_test_id("usage-metric").select_option("cost:EUR")
    expect(chart).to_have_attribute("data-metric", "cost:EUR")
    page.get_by_test_id("usage-metric").select_option("vcpu_hours")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "usage-page.png"), full_page=True)
    axe(page, "usage-page")

    with page.expect_download() as download:
        page.get_by_test_id("usage-export-csv").click()
    assert download.value.suggested_filename == f"usage-acme-{first}-{last}.csv"
    text = open(download.value.path()).read()
    assert text.startswith("date,tenant,kind,name,ref,labels,")
    assert ",acme,vm,db1," in text
