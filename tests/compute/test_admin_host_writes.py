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
