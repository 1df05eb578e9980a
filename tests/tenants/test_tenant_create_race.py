"""Two creates of the same tenant at once: one wins, the other is told the slug is
taken (409 Conflict in the service, a message in Django admin), never a server error.

The race is made certain rather than hoped for: the first create runs in a transaction
held open until PostgreSQL shows the second one waiting on the row's unique index (both
passed the "is the slug free?" check), then commits.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from portal.exceptions import Conflict
from tenants import services
from tenants.models import AuditLog, Quota, Tenant
from tests.conftest import postgres_only
from tests.races import held_open, run_in_thread
from tests.tenants.test_admin import form_data

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


def first_create() -> None:
    services.tenant_create(actor=None, slug="initech", name="First")


def test_two_creates_of_one_slug_at_once_are_one_tenant_and_one_conflict(db):
    postgres_only()
    with held_open(first_create) as commit:
        second = run_in_thread(lambda: services.tenant_create(actor=None, slug="initech"))
        commit()
        second["thread"].join(timeout=30)

    error = second.get("error")
    assert isinstance(error, Conflict), repr(error)
    assert error.errors == {"slug": ["Taken."]}
    assert "exists already" in error.message
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "First"
    assert Quota.objects.filter(tenant=tenant).count() == 1
    assert AuditLog.objects.filter(action="tenant.create", target="initech").count() == 1


def test_adding_a_tenant_in_admin_while_another_create_of_it_commits_is_a_message(
    django_user_model,
):
    postgres_only()
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    staff = Client()
    staff.force_login(admin)
    data = form_data(staff.get("/admin/tenants/tenant/add/").content.decode())
    data.update(slug="initech", name="From admin")

    with held_open(first_create) as commit:
        second = run_in_thread(lambda: staff.post("/admin/tenants/tenant/add/", data))
        commit()
        second["thread"].join(timeout=30)

    assert "error" not in second, repr(second.get("error"))
    response = second["result"]
    assert response.status_code == 302
    assert response["Location"] == "/admin/tenants/tenant/add/"
    page = staff.get(response["Location"])
    shown = [str(m) for m in get_messages(page.wsgi_request)] or [page.content.decode()]
    assert any("A tenant named 'initech' exists already." in m for m in shown)
    assert Tenant.objects.get(slug="initech").name == "First"
    assert AuditLog.objects.filter(action="tenant.create", target="initech").count() == 1
