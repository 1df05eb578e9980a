"""The usage page, its exports and API, the overview's quota request form, the admin's
monthly report and request review: what people see and get, and who may."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client

from tenants import services as tenant_services
from tenants.models import AuditLog, Quota
from usage.models import PriceList, QuotaRequest
from usage.services import requests as request_services
from usage.services.metering import usage_rollup

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def metered(demo, clock):
    """acme held 2 vCPUs / 1 VM from 10:00 to 12:00 on 2 March, labelled team=web."""
    clock("2026-03-02 10:00")
    with transaction.atomic():
        tenant_services.quota_reserve(tenant=demo.acme, ref="other:web", cpu=2, vms=1, memory=2048)
    clock("2026-03-02 12:00")
    tenant_services.quota_release("other:web")
    clock("2026-03-03 09:00")
    usage_rollup()
    return demo


def test_the_usage_page_shows_totals_breakdowns_and_no_cost_without_a_price_list(metered):
    page = web(metered.carol).get("/t/acme/usage/?start=2026-03-01&end=2026-03-03")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-usage-total="vcpu_hours">4.00<' in text
    assert 'data-usage-total="vm_hours">2.00<' in text
    assert "No price list" in text
    assert "other:web" in text  # top consumers name it (no object behind this ref)


def test_a_price_list_turns_usage_into_cost(metered):
    prices = PriceList.objects.create(
        name="Standard",
        currency="EUR",
        effective_from=date(2026, 1, 1),
        vcpu_hour=Decimal("0.05"),
        vm_hour=Decimal("0.01"),
        memory_gib_hour=Decimal("0.005"),
    )
    prices.tenants.add(metered.acme)
    page = web(metered.alice).get("/t/acme/usage/?start=2026-03-01&end=2026-03-03")
    # 4 vCPU-h × 0.05 + 2 VM-h × 0.01 + 4 GiB-h × 0.005 = 0.24
    assert 'data-usage-total="cost">EUR 0.24<' in page.content.decode()
    api = web(metered.alice).get("/api/v1/tenants/acme/usage/?start=2026-03-01&end=2026-03-03")
    body = api.json()
    assert body["totals"]["cost"] == {"EUR": "0.24"}
    assert body["totals"]["usage"]["vcpu_hours"] == 4.0
    assert [d["key"] for d in body["days"]] == ["2026-03-01", "2026-03-02", "2026-03-03"]


def test_a_price_list_applies_only_on_its_days(metered):
    PriceList.objects.create(
        name="Old",
        currency="EUR",
        effective_from=date(2026, 1, 1),
        effective_to=date(2026, 3, 1),
        applies_to_all=True,
        vcpu_hour=Decimal("1"),
    )
    body = web(metered.alice).get("/api/v1/tenants/acme/usage/?start=2026-03-01&end=2026-03-03")
    assert body.json()["totals"]["cost"] == {"EUR": "0.00"}


def test_exports_are_csv_and_json(metered):
    client = web(metered.bob)
    response = client.get("/t/acme/usage/export/?format=csv&start=2026-03-01&end=2026-03-03")
    assert response["Content-Type"].startswith("text/csv")
    assert "usage-acme-2026-03-01-2026-03-03.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:4] == ["date", "tenant", "kind", "name"]
    assert rows[1][:2] == ["2026-03-02", "acme"]
    assert rows[1][rows[0].index("vCPU-hours")] == "4.000000"
    response = client.get("/t/acme/usage/export/?format=json&start=2026-03-01&end=2026-03-03")
    assert json.loads(response.content)["totals"]["usage"]["vm_hours"] == 2.0
    assert client.get("/t/acme/usage/export/?format=xml").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "start=yesterday",
        "start=",
        "start=2026-03-05&end=2026-03-01",
        "start=2020-01-01&end=2026-01-01",
    ],
)
def test_a_bad_period_is_a_field_error(metered, query):
    response = web(metered.alice).get(f"/api/v1/tenants/acme/usage/?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert set(response.json()["errors"]) <= {"start", "end"}


def test_another_tenants_usage_is_not_found(metered):
    for path in ["/t/acme/usage/", "/t/acme/usage/export/"]:
        assert web(metered.dave).get(path).status_code == 404
    assert web(metered.dave).get("/api/v1/tenants/acme/usage/").status_code == 404


def test_a_tenant_admin_requests_more_quota_from_the_overview(demo):
    overview = web(demo.alice).get("/t/acme/").content.decode()
    assert 'data-testid="quota-request-open"' in overview
    assert 'data-testid="quota-request-open"' not in web(demo.bob).get("/t/acme/").content.decode()
    response = web(demo.alice).post(
        "/t/acme/quota/requests/", {"increase_vms": "2", "reason": "Launch."}
    )
    assert response.status_code == 302
    request = QuotaRequest.objects.get()
    assert (request.increase, request.requester) == ({"vms": 2}, demo.alice)
    overview = web(demo.carol).get("/t/acme/").content.decode()
    assert f'data-quota-request="{request.name}"' in overview
    assert "+2 VMs" in overview


def test_a_bad_request_form_changes_nothing_and_says_why(demo):
    client = web(demo.alice)
    response = client.post("/t/acme/quota/requests/", {"increase_vms": "-3", "reason": "x"})
    assert response.status_code == 302
    page = client.get("/t/acme/").content.decode()
    assert "vms: Must be zero or more." in page
    assert not QuotaRequest.objects.exists()


def test_the_api_lists_and_creates_quota_requests(demo, api):
    response = api(demo.alice).post(
        "/api/v1/tenants/acme/quota/requests/",
        {"spec": {"increase": {"cpu": "1.5", "vms": 1}, "reason": "CI runners."}},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"]["state"] == "Pending"
    assert body["spec"]["increase"] == {"cpu": "1.500", "vms": "1"}
    listed = api(demo.carol).get("/api/v1/tenants/acme/quota/requests/").json()
    assert [item["metadata"]["name"] for item in listed["items"]] == [body["metadata"]["name"]]
    again = api(demo.alice).post(
        "/api/v1/tenants/acme/quota/requests/",
        {"spec": {"increase": {"vms": 1}, "reason": "More."}},
        format="json",
    )
    assert again.status_code == 409
    assert again.json()["errors"] == {"spec.increase": ["A request is pending already."]}
    bad = api(demo.alice).post(
        "/api/v1/tenants/acme/quota/requests/",
        {"spec": {"increase": {"gpus": 1}, "reason": "x"}},
        format="json",
    )
    assert bad.status_code == 400
    assert "spec.increase.gpus" in bad.json()["errors"]


def test_staff_review_and_approve_a_request_in_django_admin(demo):
    request = request_services.quota_request_create(
        actor=demo.alice, tenant=demo.acme, increase={"vms": 4}, reason="Launch."
    )
    admin = web(demo.admin)
    listing = admin.get("/admin/usage/quotarequest/").content.decode()
    assert request.name in listing
    review = admin.get(f"/admin/usage/quotarequest/{request.pk}/change/")
    assert review.status_code == 200
    text = review.content.decode()
    assert "Usage, last 30 days" in text and "Launch." in text
    response = admin.post(
        f"/admin/usage/quotarequest/{request.pk}/change/",
        {"approve": "Approve", "granted_vms": "3", "reason": "Three for now."},
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == "PartiallyApproved"
    assert Quota.objects.get(tenant=demo.acme).vms == 23
    assert AuditLog.objects.filter(action="quota.set", actor=demo.admin).exists()


def test_staff_rejecting_without_a_reason_is_told_and_nothing_changes(demo):
    request = request_services.quota_request_create(
        actor=demo.alice, tenant=demo.acme, increase={"vms": 4}, reason="Launch."
    )
    response = web(demo.admin).post(
        f"/admin/usage/quotarequest/{request.pk}/change/", {"reject": "Reject", "reason": ""}
    )
    assert response.status_code == 200
    assert "Say why the request is rejected." in response.content.decode()
    request.refresh_from_db()
    assert request.state == "Pending"


def test_the_admin_monthly_report_and_its_csv(metered):
    admin = web(metered.admin)
    page = admin.get("/admin/usage/usagedaily/?month=2026-03")
    assert page.status_code == 200
    assert "Usage in March 2026" in page.content.decode()
    response = admin.get("/admin/usage/usagedaily/report.csv?month=2026-03")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["month", "tenant", "deleted"]
    assert rows[1][:3] == ["2026-03", "acme", "no"]
    assert rows[1][3] == "4.000000"
    # Tenant members are not platform staff.
    assert web(metered.alice).get("/admin/usage/usagedaily/report.csv").status_code == 302


def test_price_list_changes_in_admin_are_audited(demo):
    response = web(demo.admin).post(
        "/admin/usage/pricelist/add/",
        {
            "name": "Standard",
            "currency": "EUR",
            "effective_from": "2026-01-01",
            "tenants": [demo.acme.pk],
            "vcpu_hour": "0.04",
            "memory_gib_hour": "0",
            "storage_gib_hour": "0",
            "vm_hour": "0",
            "pod_hour": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert AuditLog.objects.filter(action="price_list.save", actor=demo.admin).exists()
    assert AuditLog.objects.get(action="price_list.tenants").detail == {"tenants": ["acme"]}
    bad = web(demo.admin).post(
        "/admin/usage/pricelist/add/",
        {"name": "X", "currency": "euro", "effective_from": "2026-01-01", "vcpu_hour": "-1"},
    )
    assert bad.status_code == 200
    assert PriceList.objects.count() == 1


def test_the_demo_price_list_prices_every_tenant_and_is_seeded_once(metered):
    from usage.services.prices import price_list_seed_demo

    assert "Standard (demo)" in price_list_seed_demo()
    assert price_list_seed_demo() == "price lists: kept"
    assert PriceList.objects.count() == 1
    body = web(metered.alice).get("/api/v1/tenants/acme/usage/?start=2026-03-01&end=2026-03-03")
    # 4 vCPU-h × 0.03 + 4 GiB-h × 0.004 + 2 VM-h × 0.005 = 0.146
    assert body.json()["totals"]["cost"] == {"EUR": "0.15"}
