"""Saving a host in Django admin writes only what the admin changed: a drain (or a
reachability check) that commits while the form is being saved is kept."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.models import Host
from compute.services.migrations import host_drain
from tenants.models import AuditLog
from tests.conftest import postgres_only
from tests.races import held_open, run_in_thread
from tests.tenants.test_admin import form_data

pytestmark = [pytest.mark.libvirt_test_driver, pytest.mark.django_db(transaction=True)]


def test_saving_a_host_in_admin_keeps_a_drain_that_committed_meanwhile(
    make_host, django_user_model
):
    postgres_only()
    host = make_host("node-a")
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    url = f"/admin/compute/host/{host.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "host_form")
    assert "maintenance" not in data  # unchecked when the admin opened the form
    data["cpu_ratio"] = "2.00"

    # The drain holds the host's row until the admin's save waits on it, then commits.
    with held_open(lambda: host_drain(actor=None, host=host)) as commit:
        saving = run_in_thread(lambda: staff.post(url, data))
        commit()
        saving["thread"].join(timeout=30)

    assert "error" not in saving, repr(saving.get("error"))
    assert saving["result"].status_code == 302
    fresh = Host.objects.get(pk=host.pk)
    assert str(fresh.cpu_ratio) == "2.00"
    assert fresh.maintenance  # the drain's, not the form's stale "unchecked"
    row = AuditLog.objects.get(action="host.update")
    assert row.detail == {"fields": ["cpu_ratio"]}


def test_a_host_form_opened_before_a_drain_and_another_admins_edit_saves_only_its_own_edit(
    make_host, django_user_model
):
    host = make_host("node-b")
    url = f"/admin/compute/host/{host.pk}/change/"
    first, second = Client(), Client()
    first.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    second.force_login(django_user_model.objects.create_superuser("ops", "o@example.com", "pw"))
    stale = form_data(first.get(url).content.decode(), "host_form")
    assert "maintenance" not in stale and stale["enabled"] == "on"

    # After the first admin opened the page: a drain, and a second admin's save that
    # disables the host and labels it.
    host_drain(actor=None, host=host)
    other = form_data(second.get(url).content.decode(), "host_form")
    assert other["maintenance"] == "on"
    del other["enabled"]
    other["labels"] = '{"zone": "b"}'
    assert second.post(url, other).status_code == 302

    # The first admin edits only the CPU ratio on the page opened before all that.
    stale["cpu_ratio"] = "2.00"
    response = first.post(url, stale)
    assert response.status_code == 302, response.content.decode()[:2000]

    fresh = Host.objects.get(pk=host.pk)
    assert str(fresh.cpu_ratio) == "2.00"
    assert fresh.maintenance  # the drain's
    assert (fresh.enabled, fresh.labels) == (False, {"zone": "b"})  # the second admin's
    updates = AuditLog.objects.filter(action="host.update").order_by("pk")
    assert [(row.actor_name, row.detail) for row in updates] == [
        ("ops", {"fields": ["enabled", "labels"]}),
        ("root", {"fields": ["cpu_ratio"]}),
    ]


def test_a_stale_host_form_sent_again_after_a_form_error_still_keeps_the_drain(
    make_host, django_user_model
):
    host = make_host("node-c")
    url = f"/admin/compute/host/{host.pk}/change/"
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    stale = form_data(staff.get(url).content.decode(), "host_form")
    host_drain(actor=None, host=host)

    stale["cpu_ratio"] = "lots"
    refused = staff.post(url, stale)
    assert refused.status_code == 200 and "cpu_ratio" in refused.context["adminform"].form.errors
    again = form_data(refused.content.decode(), "host_form")
    assert "maintenance" not in again  # the page still shows what the admin sent
    again["cpu_ratio"] = "2.00"
    assert staff.post(url, again).status_code == 302

    fresh = Host.objects.get(pk=host.pk)
    assert (str(fresh.cpu_ratio), fresh.maintenance) == ("2.00", True)
    assert AuditLog.objects.get(action="host.update").detail == {"fields": ["cpu_ratio"]}
