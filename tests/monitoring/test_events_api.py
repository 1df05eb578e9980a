"""GET /api/v1/tenants/<t>/events/ and the /t/<t>/events/ timeline page."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from monitoring.services import event_publish

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def events(demo):
    for name, type_, reason in [
        ("web1", "Normal", "Started"),
        ("web1", "Warning", "Failed"),
        ("db", "Normal", "Started"),
    ]:
        event_publish(
            tenant=demo.acme, kind="vm", name=name, type=type_, reason=reason, message="m"
        )
    event_publish(tenant=demo.acme, kind="workload", name="api", reason="Scaled", message="3")
    event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="m")
    event_publish(tenant=demo.globex, kind="vm", name="secret", reason="Started", message="m")
    return demo


@pytest.mark.parametrize("who", ["carol", "bob", "alice", "admin"])
def test_every_member_reads_the_tenants_events_newest_first(events, api, who):
    body = api(getattr(events, who)).get("/api/v1/tenants/acme/events/").json()
    assert body["count"] == 4
    names = [(e["involvedObject"]["name"], e["reason"]) for e in body["items"]]
    assert names[0] == ("web1", "Started")  # folded, last seen just now
    assert "secret" not in json.dumps(body)
    folded = body["items"][0]
    assert folded["count"] == 2
    assert set(folded) == {
        "uid",
        "tenant",
        "type",
        "reason",
        "message",
        "involvedObject",
        "source",
        "count",
        "firstTimestamp",
        "lastTimestamp",
    }
    assert folded["lastTimestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=Warning", [("web1", "Failed")]),
        ("kind=workload", [("api", "Scaled")]),
        ("name=WEB", [("web1", "Started"), ("web1", "Failed")]),
        ("reason=started", [("web1", "Started"), ("db", "Started")]),
        ("kind=vm&type=Normal&name=db", [("db", "Started")]),
    ],
)
def test_filters_narrow_the_list(events, api, query, expected):
    body = api(events.carol).get(f"/api/v1/tenants/acme/events/?{query}").json()
    assert [(e["involvedObject"]["name"], e["reason"]) for e in body["items"]] == expected


def test_a_bad_filter_value_is_a_problem_with_the_field(events, api):
    response = api(events.carol).get("/api/v1/tenants/acme/events/?type=Error")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "type" in response.json()["errors"]


def test_the_list_is_paginated(events, api):
    body = api(events.carol).get("/api/v1/tenants/acme/events/?limit=2").json()
    assert (body["count"], len(body["items"])) == (4, 2)
    assert "offset=2" in body["next"]


def test_another_tenants_events_look_like_a_tenant_that_does_not_exist(events, api):
    client = api(events.dave)
    foreign = client.get("/api/v1/tenants/acme/events/")
    missing = client.get("/api/v1/tenants/initech/events/")
    assert foreign.status_code == missing.status_code == 404
    assert foreign["Content-Type"] == "application/problem+json"
    assert json.loads(foreign.content.decode().replace("acme", "initech")) == missing.json()
    assert api(events.outsider).get("/api/v1/tenants/acme/events/").status_code == 404
    assert api().get("/api/v1/tenants/acme/events/").status_code == 401


# --- The timeline page -----------------------------------------------------------------
def rows(html: str) -> int:
    """Event rows (the empty row in <template> for live.js has no uid)."""
    return len(re.findall(r'<tr data-event-uid="[0-9a-f-]{36}"', html))


def page(user, query: str = "") -> str:
    client = Client()
    client.force_login(user)
    response = client.get(f"/t/acme/events/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_the_timeline_shows_the_tenants_events_with_counts(events):
    html = page(events.carol)
    assert rows(html) == 4
    assert "×2" in html
    assert "secret" not in html
    assert 'data-stream="tenant.acme"' in html
    assert 'id="isotope-live-baseline"' in html
    assert 'data-live-tenant="acme"' in html


def test_the_timeline_filters_by_get_parameters(events):
    html = page(events.carol, "?type=Warning")
    assert rows(html) == 1
    assert 'data-reason="Failed"' in html
    assert 'data-filter-type="Warning"' in html


def test_messages_are_escaped_on_the_timeline(demo):
    event_publish(
        tenant=demo.acme, kind="vm", name="x", reason="Hacked", message="<script>alert(1)</script>"
    )
    html = page(demo.carol)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_timeline_pages_older_events(demo):
    for n in range(55):
        event_publish(tenant=demo.acme, kind="vm", name=f"vm{n}", reason="Started", message="m")
    first = page(demo.carol)
    assert rows(first) == 50
    assert 'data-live-prepend="1"' in first
    second = page(demo.carol, "?page=2")
    assert rows(second) == 5
    assert 'data-live-prepend=""' in second
