"""Refused privileged actions leave an audit trail, in the API as on the web."""

from __future__ import annotations

import pytest

from tenants.models import AuditLog

pytestmark = pytest.mark.unit


def test_an_operator_adding_a_member_through_the_api_is_refused_and_audited(demo, api):
    response = api(demo.bob).post(
        "/api/v1/tenants/acme/members/",
        {"metadata": {"name": "erin"}, "spec": {"role": "admin"}},
        format="json",
    )
    assert response.status_code == 403
    entry = AuditLog.objects.get(action="member.manage", outcome="denied")
    assert entry.actor == demo.bob and entry.tenant == demo.acme
    assert entry.target == "/api/v1/tenants/acme/members/"


def test_a_viewer_opening_the_member_form_on_the_web_is_refused_and_audited(demo, client):
    client.force_login(demo.carol)
    response = client.post("/t/acme/members/add/", {"username": "erin", "role": "admin"})
    assert response.status_code == 403
    assert AuditLog.objects.filter(
        action="member.manage", outcome="denied", actor=demo.carol
    ).exists()


def test_reads_refused_to_outsiders_are_404_and_not_audited_as_denied(demo, api):
    response = api(demo.dave).get("/api/v1/tenants/acme/members/")
    assert response.status_code == 404
    assert not AuditLog.objects.filter(outcome="denied").exists()
