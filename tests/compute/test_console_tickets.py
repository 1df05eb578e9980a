"""Console tickets: issue, store hashed, single use, expiry, binding; the API and page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from compute.choices import Phase
from compute.models import ConsoleTicket, Host, VirtualMachine
from compute.services import console as console_services

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def vm(demo, tiny_image):
    """A Running VM on a host that has a console (as node1 reports), without a guest."""
    host = Host.objects.create(
        name="node1", uri="qemu:///nowhere", reachable=True, capabilities={"console": True}
    )
    return VirtualMachine.objects.create(
        tenant=demo.acme,
        name="web",
        vcpus=1,
        memory_mib=256,
        image=tiny_image,
        host=host,
        phase=Phase.RUNNING,
    )


def test_a_ticket_is_random_stored_only_as_its_digest_and_valid_at_most_30_s(demo, vm, settings):
    settings.ISOTOPE_CONSOLE_TICKET_SECONDS = 600  # capped
    before = timezone.now()
    issued = console_services.console_ticket_issue(actor=demo.bob, vm=vm, session_key="s1")
    after = timezone.now()
    row = ConsoleTicket.objects.get()
    assert len(issued.ticket) >= 43 and issued.ticket not in row.digest
    assert row.digest == console_services.ticket_digest(issued.ticket)
    # Issued somewhere between before and after (however slow the machine): 30 s later.
    assert before + timedelta(seconds=30) <= issued.expires <= after + timedelta(seconds=30)
    assert (row.user, row.vm, row.session_key, row.view_only) == (demo.bob, vm, "s1", False)


def test_a_ticket_is_spent_once_and_only_by_its_session_and_user(demo, vm):
    def issue(user=demo.bob, session="s1"):
        return console_services.console_ticket_issue(actor=user, vm=vm, session_key=session).ticket

    ticket = issue()
    grant = console_services.console_ticket_redeem(
        ticket=ticket, user_id=demo.bob.pk, session_key="s1"
    )
    assert (grant.vm_name, grant.view_only) == ("web", False)
    with pytest.raises(console_services.TicketRefused):
        console_services.console_ticket_redeem(ticket=ticket, user_id=demo.bob.pk, session_key="s1")
    for user_id, session in [(demo.bob.pk, "s2"), (demo.alice.pk, "s1"), (None, None)]:
        with pytest.raises(console_services.TicketRefused):
            console_services.console_ticket_redeem(
                ticket=issue(), user_id=user_id, session_key=session
            )
    expired = issue()
    ConsoleTicket.objects.filter(digest=console_services.ticket_digest(expired)).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(console_services.TicketRefused):
        console_services.console_ticket_redeem(
            ticket=expired, user_id=demo.bob.pk, session_key="s1"
        )


def test_access_is_rechecked_when_the_ticket_is_spent(demo, vm):
    from tenants import services as tenant_services

    ticket = console_services.console_ticket_issue(actor=demo.carol, vm=vm, session_key="c").ticket
    tenant_services.membership_remove(actor=demo.alice, tenant=demo.acme, user=demo.carol)
    with pytest.raises(console_services.PermissionDenied):
        console_services.console_ticket_redeem(
            ticket=ticket, user_id=demo.carol.pk, session_key="c"
        )


def test_the_api_issues_view_only_tickets_to_viewers_and_hides_other_tenants(demo, vm, api):
    response = api(demo.carol).post("/api/v1/tenants/acme/virtualmachines/web/console/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"ticket", "websocketPath", "expires", "viewOnly"}
    assert body["viewOnly"] is True and body["websocketPath"] == "/ws/console/"
    assert response["Cache-Control"] == "no-store"
    assert (
        api(demo.bob).post("/api/v1/tenants/acme/virtualmachines/web/console/").json()["viewOnly"]
        is False
    )
    assert (
        api(demo.dave).post("/api/v1/tenants/acme/virtualmachines/web/console/").status_code == 404
    )
    assert (
        api(demo.outsider).post("/api/v1/tenants/acme/virtualmachines/web/console/").status_code
        == 404
    )
    assert api().post("/api/v1/tenants/acme/virtualmachines/web/console/").status_code in (401, 403)


def test_no_ticket_while_the_vm_is_stopped_or_its_host_has_no_console(demo, vm, make_host, api):
    url = "/api/v1/tenants/acme/virtualmachines/web/console/"
    vm.phase = Phase.STOPPED
    vm.save()
    response = api(demo.bob).post(url)
    assert response.status_code == 409
    assert "Stopped" in response.json()["detail"]
    vm.phase = Phase.RUNNING
    vm.host = make_host("testhost")  # libvirt test driver: no VNC server
    vm.save()
    response = api(demo.bob).post(url)
    assert response.status_code == 409 and "no graphical console" in response.json()["detail"]
    assert not ConsoleTicket.objects.exists()


def test_the_console_page_says_why_there_is_no_console_and_issues_no_ticket(demo, vm, make_host):
    vm.host = make_host("testhost")
    vm.save()
    client = Client()
    client.force_login(demo.carol)
    response = client.get("/t/acme/vms/web/console/")
    assert response.status_code == 200
    assert b"no graphical console (libvirt test driver)" in response.content
    assert not ConsoleTicket.objects.exists()
    client.force_login(demo.dave)
    assert client.get("/t/acme/vms/web/console/").status_code == 404


# --- Role matrix for the console routes (tests/tenants/test_role_matrix.py defers here) --
CONSOLE_ROUTES = [
    ("web", "get", "/t/{t}/vms/web/console/", 200),
    ("web", "get", "/t/{t}/vms/web/console/serial/", 200),
    ("api", "post", "/api/v1/tenants/{t}/virtualmachines/web/console/", 201),
]


@pytest.mark.parametrize("actor", ["anonymous", "erin", "carol", "bob", "alice", "dave", "admin"])
@pytest.mark.parametrize("tenant", ["acme", "globex", "initech"])
def test_console_routes_answer_every_role_and_tenant_by_the_permission_map(
    demo, vm, api, actor, tenant
):
    users = {
        "erin": demo.outsider,
        "carol": demo.carol,
        "bob": demo.bob,
        "alice": demo.alice,
        "dave": demo.dave,
        "admin": demo.admin,
    }
    user = users.get(actor)
    member = tenant == "acme" and actor in {"carol", "bob", "alice", "admin"}
    for surface, method, path, ok in CONSOLE_ROUTES:
        url = path.format(t=tenant)
        if surface == "web":
            client = Client()
            if user is not None:
                client.force_login(user)
        else:
            client = api(user)
        response = getattr(client, method)(url)
        if user is None:
            want = 302 if surface == "web" else (401, 403)
        else:
            want = ok if member else 404
        assert response.status_code in (want if isinstance(want, tuple) else (want,)), (
            f"{actor} {method} {url}: {response.status_code}"
        )
    issued = ConsoleTicket.objects.filter(user=user) if user else ConsoleTicket.objects.none()
    assert issued.count() == (2 if member else 0)  # the page's and the API's
