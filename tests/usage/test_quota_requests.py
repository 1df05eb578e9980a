"""Quota requests: tenant admins ask, platform staff approve (maybe in part) or reject;
approval goes through quota_set; everything is an event, audited, and the requester
is told."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction

from monitoring.models import Event, Notification
from monitoring.notifications import notification_email_send
from portal.exceptions import Conflict, PermissionDenied, ValidationError
from tenants.models import AuditLog, Quota
from usage.models import QuotaAutoApproval, QuotaRequest
from usage.services import requests as request_services

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def ask(demo, actor=None, increase=None, reason="Two more web servers for the launch."):
    return request_services.quota_request_create(
        actor=actor or demo.alice,
        tenant=demo.acme,
        increase={"vms": 2} if increase is None else increase,
        reason=reason,
    )


def test_a_tenant_admin_asks_and_staff_approve_through_quota_set(demo):
    request = ask(demo)
    assert request.state == "Pending"
    assert request.increase == {"vms": 2}
    assert Event.objects.filter(kind="quota-request", reason="QuotaRequested").exists()
    assert AuditLog.objects.filter(action="quota_request.create", actor=demo.alice).exists()

    decided = request_services.quota_request_decide(
        actor=demo.admin, request=request, approve=True, reason="Fine."
    )
    assert decided.state == "Approved"
    assert Quota.objects.get(tenant=demo.acme).vms == 22
    quota_audit = AuditLog.objects.get(action="quota.set", actor=demo.admin)
    assert quota_audit.detail["to"] == {"vms": "22"}
    assert AuditLog.objects.filter(action="quota_request.approve", actor=demo.admin).exists()
    event = Event.objects.get(reason="QuotaRequestApproved")
    assert event.message == f"Quota request {request.name} approved by admin: +2 VMs. Fine."
    notice = Notification.objects.get(user=demo.alice, kind="quota.request")
    assert notice.title == "Quota request approved (acme)"
    assert notice.level == "success"


def test_staff_may_grant_part_of_a_request(demo):
    request = ask(demo, increase={"vms": 4, "cpu": "2.5"})
    decided = request_services.quota_request_decide(
        actor=demo.admin, request=request, approve=True, granted={"vms": 1, "cpu": 0}
    )
    assert decided.state == "PartiallyApproved"
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.vms, quota.cpu) == (21, Decimal(16))
    assert decided.granted == {"vms": 1}


def test_a_rejection_needs_a_reason_and_changes_no_limit(demo):
    request = ask(demo)
    with pytest.raises(ValidationError) as refused:
        request_services.quota_request_decide(actor=demo.admin, request=request, approve=False)
    assert "reason" in refused.value.errors
    decided = request_services.quota_request_decide(
        actor=demo.admin, request=request, approve=False, reason="Use the spare VMs first."
    )
    assert decided.state == "Rejected"
    assert Quota.objects.get(tenant=demo.acme).vms == 20
    notice = Notification.objects.get(user=demo.alice)
    assert "Use the spare VMs first." in notice.message
    assert notification_email_send(notification_id=notice.pk)
    assert mail.outbox[0].subject == "[Isotope] Quota request rejected (acme)"


def test_a_decided_request_cannot_be_decided_again(demo):
    request = ask(demo)
    request_services.quota_request_decide(actor=demo.admin, request=request, approve=True)
    with pytest.raises(Conflict):
        request_services.quota_request_decide(
            actor=demo.admin, request=request, approve=False, reason="No."
        )
    assert Quota.objects.get(tenant=demo.acme).vms == 22


def test_granting_more_than_was_asked_is_refused(demo):
    request = ask(demo)
    with pytest.raises(ValidationError) as refused:
        request_services.quota_request_decide(
            actor=demo.admin, request=request, approve=True, granted={"vms": 3}
        )
    assert refused.value.errors == {"granted.vms": ["At most what was asked (2)."]}
    assert QuotaRequest.objects.get().state == "Pending"


@pytest.mark.parametrize(
    ("increase", "reason", "field"),
    [
        ({}, "x", "increase"),
        ({"vms": 0}, "x", "increase"),
        ({"vms": -1}, "x", "increase.vms"),
        ({"vms": "1.5"}, "x", "increase.vms"),
        ({"cpu": "0.0001"}, "x", "increase.cpu"),
        ({"gpus": 1}, "x", "increase.gpus"),
        ({"vms": "many"}, "x", "increase.vms"),
        ({"vms": 10**7}, "x", "increase.vms"),
        ({"vms": 1}, "   ", "reason"),
        ({"vms": 1}, "x" * 1001, "reason"),
        ({"vms": 1}, "null\x00byte", "reason"),
    ],
)
def test_bad_requests_get_a_field_error_and_change_nothing(demo, increase, reason, field):
    with pytest.raises(ValidationError) as refused:
        ask(demo, increase=increase, reason=reason)
    assert field in refused.value.errors
    assert not QuotaRequest.objects.exists()


def test_one_pending_request_per_tenant(demo):
    ask(demo)
    with pytest.raises(Conflict):
        ask(demo, increase={"cpu": 2})
    assert QuotaRequest.objects.count() == 1


def test_only_tenant_admins_ask_and_only_staff_decide(demo):
    for who in (demo.bob, demo.carol):
        with pytest.raises(PermissionDenied):
            ask(demo, actor=who)
    request = ask(demo)
    with pytest.raises(PermissionDenied):
        request_services.quota_request_decide(actor=demo.alice, request=request, approve=True)
    denied = AuditLog.objects.filter(outcome="denied").values_list("action", flat=True)
    assert sorted(denied) == ["quota.request", "quota.request", "quota_request.approve"]
    assert Quota.objects.get(tenant=demo.acme).vms == 20


def test_an_auto_approval_rule_approves_small_requests_once_a_period(demo):
    QuotaAutoApproval.objects.create(tenant=demo.acme, max_percent=20, period_days=30)
    first = ask(demo, increase={"vms": 4})  # 20 % of 20
    assert (first.state, first.auto_approved, first.decided_by_name) == (
        "Approved",
        True,
        "auto-approval",
    )
    assert Quota.objects.get(tenant=demo.acme).vms == 24
    second = ask(demo, increase={"vms": 1})  # within the percentage, but not this month
    assert second.state == "Pending"
    request_services.quota_request_decide(
        actor=demo.admin, request=second, approve=False, reason="Later."
    )
    too_big = ask(demo, increase={"cpu": 8})
    assert too_big.state == "Pending"


def test_a_rolled_back_request_leaves_nothing(demo):
    with pytest.raises(RuntimeError), transaction.atomic():
        ask(demo)
        raise RuntimeError
    assert not QuotaRequest.objects.exists()
    assert not Event.objects.filter(kind="quota-request").exists()
