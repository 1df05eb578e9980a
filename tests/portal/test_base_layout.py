"""The base layout every page pays for: its statements are few, and what it keeps or
reads once (the sidebar rendered once per key, the tenant switcher from the role
lookup's memberships, the bell in one statement, the tenant row the two-factor check
read) shows the new value on the next page after the change."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from monitoring import notifications
from tenants import services
from tenants.choices import Role
from tenants.models import Tenant

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def sidebar(html: str) -> str:
    return re.search(r'<aside class="col-md-3.*?</aside>', html, re.S).group(0)


def switcher(html: str) -> str:
    start = html.index("Your tenants")
    return html[start : html.index("</ul>", start)]


def bell_count(html: str) -> str | None:
    """The badge's number, or None when it is hidden (nothing unread)."""
    badge = re.search(r'<span class="badge[^"]*"[^>]*data-testid="notification-count"[^>]*>', html)
    if " hidden" in badge.group(0):
        return None
    return re.search(r'data-testid="notification-count">(\d+)<', html).group(1)


def test_a_tenant_page_reads_the_layout_in_few_statements(demo):
    """The VM list of a tenant without VMs: session, user, preference, tenant (read by
    the two-factor check, used by the view), memberships (role and tenant switcher),
    phase counts and the bell: 7 statements (10 before issue 16's base-layout cut)."""
    client = web(demo.bob)
    client.get("/t/acme/vms/")  # the first request of a session may write it
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/t/acme/vms/")
    assert response.status_code == 200
    tables = [re.search(r'FROM "(\w+)"', q["sql"]).group(1) for q in captured]
    assert tables == [
        "django_session",
        "auth_user",
        "tenants_userpreference",
        "tenants_tenant",
        "tenants_membership",
        "compute_virtualmachine",
        "monitoring_notification",
    ]


def test_the_tenant_row_the_two_factor_check_read_is_the_pages_and_is_fresh(demo):
    client = web(demo.bob)
    assert "ACME Corporation" in client.get("/t/acme/").content.decode()
    Tenant.objects.filter(pk=demo.acme.pk).update(name="ACME Renamed")  # as the admin does
    page = client.get("/t/acme/").content.decode()
    assert "ACME Renamed" in sidebar(page) and "ACME Renamed" in switcher(page)
    # Another tenant's pages and a tenant that does not exist stay 404s.
    assert client.get("/t/globex/").status_code == 404
    assert client.get("/t/nope/vms/").status_code == 404
    services.tenant_set_require_2fa(actor=demo.admin, tenant=demo.acme, required=True)
    assert client.get("/t/acme/").status_code == 302  # to enrol a second factor


def test_the_sidebar_follows_the_role_the_page_and_the_language(demo):
    client = web(demo.bob)
    page = sidebar(client.get("/t/acme/vms/").content.decode())
    assert "Webhooks" not in page and "iso-role-operator" in page
    assert 'active" href="/t/acme/vms/"' in page
    services.membership_set_role(actor=demo.alice, tenant=demo.acme, user=demo.bob, role=Role.ADMIN)
    page = sidebar(client.get("/t/acme/vms/").content.decode())
    assert "Webhooks" in page and "iso-role-admin" in page
    page = sidebar(client.get("/t/acme/images/").content.decode())
    assert 'active" href="/t/acme/images/"' in page and 'active" href="/t/acme/vms/"' not in page
    services.preference_set_language(user=demo.bob, language="zh-hans")
    page = sidebar(client.get("/t/acme/vms/").content.decode())
    assert "虚拟机" in page and "Virtual machines" not in page


def test_the_tenant_switcher_shows_a_membership_on_the_next_page(demo):
    client = web(demo.bob)
    assert "/t/globex/" not in switcher(client.get("/t/acme/").content.decode())
    services.membership_add(actor=demo.dave, tenant=demo.globex, user=demo.bob, role=Role.VIEWER)
    assert "/t/globex/" in switcher(client.get("/t/acme/").content.decode())
    services.membership_remove(actor=demo.dave, tenant=demo.globex, user=demo.bob)
    assert "/t/globex/" not in switcher(client.get("/t/acme/").content.decode())
    # A superuser's switcher lists every tenant.
    admin_page = web(demo.admin).get("/t/acme/").content.decode()
    assert "/t/acme/" in switcher(admin_page) and "/t/globex/" in switcher(admin_page)


def test_the_bell_shows_a_new_notification_and_its_reading_on_the_next_page(demo):
    client = web(demo.bob)
    assert bell_count(client.get("/t/acme/").content.decode()) is None
    for title in ("First news", "Second news"):
        notifications.notify(users=[demo.bob], kind="vm.failed", title=title, tenant=demo.acme)
    page = client.get("/t/acme/").content.decode()
    assert bell_count(page) == "2"
    assert "First news" in page and "Second news" in page
    notifications.notification_mark_read(user=demo.bob)
    page = client.get("/t/acme/").content.decode()
    assert bell_count(page) is None and "Second news" in page  # still listed, read
