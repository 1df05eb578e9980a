"""Memberships and accounts changed in Django admin go through the services: audited, the
last-admin rule kept, and the user's live sockets told (the real /ws/ consumer through
``portal.asgi.application`` and the real Redis channel layer)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from tenants.choices import Role
from tenants.models import AuditLog, Membership
from tests.conftest import messages_of
from tests.monitoring.test_consumer import connected, run, session_cookie, subscribe
from tests.tenants.test_admin import form_data

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]
User = get_user_model()


def membership(user, tenant) -> Membership:
    return Membership.objects.get(user=user, tenant=tenant)


# --- Memberships -------------------------------------------------------------------------
def test_deleting_a_membership_in_admin_is_audited_and_ends_the_users_tenant_stream(demo, staff):
    carol = membership(demo.carol, demo.acme)
    cookie = session_cookie(demo.carol)

    async def scenario():
        ws = await connected(cookie)
        assert (await subscribe(ws, tenant="acme"))["type"] == "subscribed"
        page = await sync_to_async(staff.get)(f"/admin/tenants/membership/{carol.pk}/delete/")
        assert page.status_code == 200
        response = await sync_to_async(staff.post)(
            f"/admin/tenants/membership/{carol.pk}/delete/", {"post": "yes"}
        )
        assert response.status_code == 302
        frame = await ws.receive_json_from(timeout=10)
        assert frame == {"type": "unsubscribed", "stream": "tenant.acme", "reason": "access"}
        again = await subscribe(ws, tenant="acme")
        assert again["type"] == "error" and again["code"] == "not_found"
        await ws.disconnect()

    run(scenario)
    assert not Membership.objects.filter(pk=carol.pk).exists()
    entry = AuditLog.objects.get(action="member.remove", target="carol")
    assert (entry.actor_name, entry.tenant_slug) == ("admin", "acme")


def test_deleting_the_last_admin_in_admin_is_refused_with_a_message(demo, staff):
    alice = membership(demo.alice, demo.acme)
    response = staff.post(f"/admin/tenants/membership/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Membership.objects.filter(pk=alice.pk).exists()
    said = messages_of(response)
    assert any("keeps at least one admin" in m for m in said), said
    assert not any("deleted successfully" in m for m in said), said
    assert not AuditLog.objects.filter(action="member.remove").exists()


def test_bulk_removal_in_admin_goes_through_the_service_one_by_one(demo, staff):
    changelist = staff.get("/admin/tenants/membership/").content.decode()
    assert 'value="delete_selected"' not in changelist  # Django's raw bulk delete is gone
    rows = [membership(demo.bob, demo.acme), membership(demo.dave, demo.globex)]
    response = staff.post(
        "/admin/tenants/membership/",
        {"action": "remove_selected", "_selected_action": [str(m.pk) for m in rows]},
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=rows[0].pk).exists()  # bob: removed
    assert Membership.objects.filter(pk=rows[1].pk).exists()  # dave: globex's last admin
    said = messages_of(response)
    assert any("dave in globex" in m and "at least one admin" in m for m in said), said
    assert list(AuditLog.objects.filter(action="member.remove").values_list("target", flat=True))
    assert AuditLog.objects.filter(action="member.remove").count() == 1


# --- Accounts ----------------------------------------------------------------------------
def test_deactivating_a_user_in_admin_closes_their_sockets_and_is_audited(demo, staff):
    cookie = session_cookie(demo.carol)
    url = f"/admin/auth/user/{demo.carol.pk}/change/"

    async def scenario():
        ws = await connected(cookie)
        assert (await subscribe(ws, tenant="acme"))["type"] == "subscribed"
        page = await sync_to_async(staff.get)(url)
        data = form_data(page.content.decode(), "user_form")
        assert data.pop("is_active") == "on"
        response = await sync_to_async(staff.post)(url, data)
        assert response.status_code == 302, response.content[:2000]
        closing = await ws.receive_output(timeout=10)
        assert closing == {"type": "websocket.close", "code": 4401}

    run(scenario)
    assert not User.objects.get(pk=demo.carol.pk).is_active
    entry = AuditLog.objects.get(action="user.deactivate")
    assert (entry.actor_name, entry.target) == ("admin", "user/carol")
    # The old session no longer signs anything in.
    assert Client().get("/", HTTP_COOKIE=f"sessionid={cookie}").status_code == 302


def test_the_deactivate_action_closes_sockets_and_refuses_staff_deactivating_themselves(
    demo, staff
):
    cookie = session_cookie(demo.bob)

    async def scenario():
        ws = await connected(cookie)
        response = await sync_to_async(staff.post)(
            "/admin/auth/user/",
            {"action": "deactivate", "_selected_action": [str(demo.bob.pk), str(demo.admin.pk)]},
        )
        assert response.status_code == 302
        assert any("your own account" in m for m in messages_of(response))
        closing = await ws.receive_output(timeout=10)
        assert closing == {"type": "websocket.close", "code": 4401}

    run(scenario)
    assert not User.objects.get(pk=demo.bob.pk).is_active
    assert User.objects.get(pk=demo.admin.pk).is_active
    assert AuditLog.objects.filter(action="user.deactivate").count() == 1


def test_deleting_a_user_in_admin_keeps_last_admins_and_audits(demo, staff):
    response = staff.post(f"/admin/auth/user/{demo.dave.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert User.objects.filter(pk=demo.dave.pk).exists()
    assert any("last admin of globex" in m for m in messages_of(response))
    cookie = session_cookie(demo.bob)

    async def scenario():
        ws = await connected(cookie)
        done = await sync_to_async(staff.post)(
            f"/admin/auth/user/{demo.bob.pk}/delete/", {"post": "yes"}
        )
        assert done.status_code == 302
        closing = await ws.receive_output(timeout=10)
        assert closing == {"type": "websocket.close", "code": 4401}

    run(scenario)
    assert not User.objects.filter(username="bob").exists()
    entry = AuditLog.objects.get(action="user.delete")
    assert (entry.target, entry.detail) == ("user/bob", {"tenants": ["acme"]})
    assert Membership.objects.filter(tenant=demo.acme, role=Role.ADMIN).exists()


# --- Passwords ---------------------------------------------------------------------------
def set_password(staff, user):
    """Staff set ``user``'s password on the admin's password page."""
    return staff.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"usable_password": "true", "password1": "n3w-Secret-pass", "password2": "n3w-Secret-pass"},
    )


def test_staff_setting_a_users_password_closes_that_users_sockets(demo, staff):
    cookie = session_cookie(demo.carol)

    async def scenario():
        ws = await connected(cookie)
        response = await sync_to_async(set_password)(staff, demo.carol)
        assert response.status_code == 302, response.content[:2000]
        closing = await ws.receive_output(timeout=10)
        assert closing == {"type": "websocket.close", "code": 4401}

    run(scenario)
    entry = AuditLog.objects.get(action="user.set_password")
    assert (entry.actor_name, entry.target, entry.detail) == (
        "admin",
        "user/carol",
        {"usable": True},
    )
    # Her old session no longer signs anything in either.
    assert Client().get("/", HTTP_COOKIE=f"sessionid={cookie}").status_code == 302


def test_staff_setting_their_own_password_keep_this_sessions_sockets_and_close_the_others(
    demo, staff
):
    own = staff.cookies[settings.SESSION_COOKIE_NAME].value
    elsewhere = session_cookie(demo.admin)

    async def scenario():
        here = await connected(own)
        there = await connected(elsewhere)
        response = await sync_to_async(set_password)(staff, demo.admin)
        assert response.status_code == 302, response.content[:2000]
        closing = await there.receive_output(timeout=10)
        assert closing == {"type": "websocket.close", "code": 4401}
        # The page's own socket got the same message and is still open: it answers.
        assert (await subscribe(here, tenant="acme"))["type"] in {"subscribed", "error"}
        await here.disconnect()

    run(scenario)
    assert AuditLog.objects.get(action="user.set_password").target == "user/admin"
    assert staff.get("/admin/").status_code == 200  # still signed in on this page
