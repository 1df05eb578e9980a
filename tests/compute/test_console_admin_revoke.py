"""Platform staff revoking access in Django admin ends the user's live sessions: an open
console on a real QEMU guest and the /ws/ stream of the tenant (qemu tier, the real
consumers through ``portal.asgi.application`` and the real Redis channel layer)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from tenants.models import AuditLog, Membership
from tests.compute.test_console_proxy import (  # noqa: F401 - fixtures
    Rfb,
    closed_with,
    guest,
    session_cookie,
    socket,
    ticket_for,
)
from tests.compute.test_qemu_vms import node1  # noqa: F401 - fixture
from tests.monitoring.test_consumer import connected, run, subscribe
from tests.tenants.test_admin import form_data

pytestmark = [pytest.mark.qemu, pytest.mark.django_db(transaction=True)]


def test_admin_deleting_a_membership_or_deactivating_a_user_closes_console_and_stream(
    demo,
    guest,  # noqa: F811 - fixture
):
    staff = Client()
    staff.force_login(demo.admin)
    bob_cookie, bob_key = session_cookie(demo.bob)
    carol_cookie, carol_key = session_cookie(demo.carol)
    bob_ticket = ticket_for(demo.bob, guest, bob_key)
    carol_ticket = ticket_for(demo.carol, guest, carol_key)
    bob_membership = Membership.objects.get(user=demo.bob, tenant=demo.acme)
    carol_url = f"/admin/auth/user/{demo.carol.pk}/change/"

    async def console(cookie, ticket):
        ws = socket(cookie, ticket)
        ok, _ = await ws.connect(timeout=10)
        assert ok
        await Rfb(ws).handshake()
        return ws

    async def scenario():
        bob_console = await console(bob_cookie, bob_ticket)
        carol_console = await console(carol_cookie, carol_ticket)
        bob_live = await connected(bob_cookie)
        carol_live = await connected(carol_cookie)
        for live in (bob_live, carol_live):
            assert (await subscribe(live, tenant="acme"))["type"] == "subscribed"

        # Staff delete Bob's membership on the membership admin page.
        response = await sync_to_async(staff.post)(
            f"/admin/tenants/membership/{bob_membership.pk}/delete/", {"post": "yes"}
        )
        assert response.status_code == 302
        assert await closed_with(bob_console) == 4403
        frame = await bob_live.receive_json_from(timeout=10)
        assert frame == {"type": "unsubscribed", "stream": "tenant.acme", "reason": "access"}
        assert await carol_console.receive_nothing(0.5), "Carol's console stays open"

        # Staff untick "active" on Carol's account.
        page = await sync_to_async(staff.get)(carol_url)
        data = form_data(page.content.decode(), "user_form")
        data.pop("is_active")
        response = await sync_to_async(staff.post)(carol_url, data)
        assert response.status_code == 302
        assert await closed_with(carol_console) == 4401
        closing = await carol_live.receive_output(timeout=10)
        assert closing == {"type": "websocket.close", "code": 4401}
        await bob_live.disconnect()

    run(scenario)
    assert AuditLog.objects.filter(action="member.remove", target="bob").exists()
    assert AuditLog.objects.filter(action="user.deactivate", target="user/carol").exists()
    closes = AuditLog.objects.filter(action="vm.console.close")
    reasons = sorted((e.actor_name, e.detail["reason"]) for e in closes)
    assert reasons == [("bob", "access-lost"), ("carol", "signed-out")]
