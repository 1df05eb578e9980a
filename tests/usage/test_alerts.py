"""Quota nearly exhausted: the tenant's admins are told once per crossing of 80 % and
95 %, and again after use fell back below and rose past it once more."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import transaction

from monitoring.models import Event, Notification
from monitoring.notifications import notification_email_send
from tenants import services as tenant_services

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def reserve(tenant, ref: str, vms: int) -> None:
    with transaction.atomic():
        tenant_services.quota_reserve(tenant=tenant, ref=ref, vms=vms)


def alerts(user) -> list[str]:
    return list(
        Notification.objects.filter(user=user, kind="quota.threshold")
        .order_by("id")
        .values_list("title", flat=True)
    )


def test_crossing_80_then_95_tells_the_admins_once_each(demo):
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 20})
    reserve(demo.acme, "other:a", 15)
    assert alerts(demo.alice) == []
    reserve(demo.acme, "other:b", 1)  # 16/20 = 80 %
    reserve(demo.acme, "other:c", 1)  # 85 %: still the same crossing
    assert alerts(demo.alice) == ["ACME Corporation: quota 80 % used"]
    reserve(demo.acme, "other:d", 2)  # 95 %
    assert alerts(demo.alice) == [
        "ACME Corporation: quota 80 % used",
        "ACME Corporation: quota 95 % used",
    ]
    # Admins only: bob (operator) and carol (viewer) are not told.
    assert alerts(demo.bob) == alerts(demo.carol) == []
    event = Event.objects.filter(reason="QuotaNearlyExhausted").order_by("id").last()
    assert event.type == "Warning"
    assert "Virtual machines: 19 of 20 VMs (95 %, past 95 %)" in event.message


def test_dropping_below_resets_so_the_next_crossing_is_told_again(demo):
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 10})
    reserve(demo.acme, "other:a", 8)
    assert len(alerts(demo.alice)) == 1
    tenant_services.quota_release("other:a")
    reserve(demo.acme, "other:b", 8)
    assert len(alerts(demo.alice)) == 2


def test_raising_the_limit_resets_and_lowering_it_can_cross(
    demo, django_capture_on_commit_callbacks
):
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 10})
    reserve(demo.acme, "other:a", 8)
    assert len(alerts(demo.alice)) == 1
    # Limit changes are followed once committed (portal.signals.quota_changed).
    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 20})  # 40 %
    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 9})  # 89 %
    assert len(alerts(demo.alice)) == 2


def test_the_alert_is_mailed_to_admins_who_want_email(demo):
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"cpu": 4})
    with transaction.atomic():
        tenant_services.quota_reserve(tenant=demo.acme, ref="other:a", cpu=4)
    notification = Notification.objects.get(user=demo.alice, kind="quota.threshold")
    assert notification_email_send(notification_id=notification.pk) is True
    assert notification_email_send(notification_id=notification.pk) is False  # once
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert mail.outbox[0].subject == "[Isotope] ACME Corporation: quota 95 % used"
    assert "CPU: 4 of 4 cores (100 %, past 95 %)" in mail.outbox[0].body


def test_creates_charged_at_their_end_cross_80_once_and_again_after_a_fall(demo):
    """The path every VM and volume create takes (``QuotaCharge``): use below every
    level records nothing; crossing tells the admins once; after a release below 80 %,
    the next crossing is told again."""

    def create(ref: str, vms: int) -> None:
        with transaction.atomic():
            charge = tenant_services.QuotaCharge(demo.acme)
            charge.reserve(ref=ref, kind="other", object_id=ref, vms=vms)
            charge.charge()

    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 10})
    create("other:a", 7)  # 70 %
    assert alerts(demo.alice) == []
    create("other:b", 1)  # 80 %
    create("other:c", 1)  # 90 %: the same crossing
    assert alerts(demo.alice) == ["ACME Corporation: quota 80 % used"]
    tenant_services.quota_release("other:b")
    tenant_services.quota_release("other:c")  # 70 %: reset
    create("other:d", 1)  # 80 % again
    assert alerts(demo.alice) == ["ACME Corporation: quota 80 % used"] * 2


def test_a_create_that_crosses_no_level_reads_no_kept_level_and_one_that_does_is_told(demo):
    """A tenant above 80 % pays no read of its kept levels on each create (bench/README.md,
    ``accept_cpu``); the create that takes it past 95 % is still told."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from usage.models import QuotaAlert

    def create(ref: str, vms: int) -> list[str]:
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            charge = tenant_services.QuotaCharge(demo.acme)
            charge.reserve(ref=ref, kind="other", object_id=ref, vms=vms)
            charge.charge()
        table = QuotaAlert._meta.db_table
        return [q["sql"] for q in queries.captured_queries if table in q["sql"]]

    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 20})
    assert create("other:a", 16)  # 80 %: read and recorded
    assert create("other:b", 1) == []  # 85 %: nothing crossed, nothing read
    assert create("other:c", 1) == []  # 90 %
    assert alerts(demo.alice) == ["ACME Corporation: quota 80 % used"]
    assert create("other:d", 1)  # 95 %
    assert alerts(demo.alice) == [
        "ACME Corporation: quota 80 % used",
        "ACME Corporation: quota 95 % used",
    ]


def test_the_hourly_sweep_tells_a_crossing_no_create_made(demo, settings):
    """Creates read the kept levels only when their own amounts cross one. A level added
    to ISOTOPE_QUOTA_ALERT_LEVELS under a tenant's use, or a limit change whose re-check
    never ran, is told by the sweep, once; a tenant whose levels are right costs no
    check."""
    from usage.services.alerts import quota_alerts_sweep

    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 20})
    reserve(demo.acme, "other:a", 18)  # 90 %: past 80
    assert alerts(demo.alice) == ["ACME Corporation: quota 80 % used"]
    assert quota_alerts_sweep() == 0

    settings.ISOTOPE_QUOTA_ALERT_LEVELS = [80, 85, 95]  # 85 added, under the use
    assert alerts(demo.alice) == ["ACME Corporation: quota 80 % used"]
    assert quota_alerts_sweep() == 1
    assert alerts(demo.alice)[-1] == "ACME Corporation: quota 85 % used"
    assert quota_alerts_sweep() == 0  # told once

    # The limit lowered, its re-check after the commit lost (not run here): 18 of 18.
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 18})
    assert quota_alerts_sweep() == 1
    assert alerts(demo.alice)[-1] == "ACME Corporation: quota 95 % used"
    assert quota_alerts_sweep() == 0
