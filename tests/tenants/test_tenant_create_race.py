"""Two creates of the same tenant at once: one wins, the other is told the slug is
taken (409 Conflict in the service, a message in Django admin), never a server error.

The race is made certain rather than hoped for: the first create runs in a transaction
held open until PostgreSQL shows the second one waiting on the row's unique index (both
passed the "is the slug free?" check), then commits.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.test import Client

from portal.exceptions import Conflict
from tenants import services
from tenants.models import AuditLog, Quota, Tenant
from tests.conftest import postgres_only, wait_for
from tests.tenants.test_admin import form_data

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@contextmanager
def first_create_held_open(slug: str):
    """Create ``slug`` in another thread and keep its transaction open until the body
    has started a second create that waits on it; then commit."""
    created, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def create() -> None:
        try:
            with transaction.atomic():
                services.tenant_create(actor=None, slug=slug, name="First")
                created.set()
                release.wait(30)
        except BaseException as error:
            failures.append(error)
        finally:
            created.set()
            connection.close()

    thread = threading.Thread(target=create)
    thread.start()
    assert created.wait(30)

    def commit_once_the_second_waits() -> None:
        wait_for(waiting_on_a_lock, 30, 0.02, message="the second create never waited")
        release.set()

    try:
        yield commit_once_the_second_waits
    finally:
        release.set()
        thread.join(timeout=30)
    assert not failures, failures


def run_in_thread(work) -> dict:
    outcome: dict = {}

    def body() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    outcome["thread"] = thread
    return outcome


def test_two_creates_of_one_slug_at_once_are_one_tenant_and_one_conflict(db):
    postgres_only()
    with first_create_held_open("initech") as commit:
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

    with first_create_held_open("initech") as commit:
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
