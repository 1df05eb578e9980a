"""Who may reach the live-migration pages: tenant admins for their VMs, staff for the
platform pages; another tenant's objects are 404 (role matrix for these routes)."""

from __future__ import annotations

import pytest

from compute.choices import Phase
from compute.models import Host, Migration, VirtualMachine
from compute.services import vms as vm_services
from tenants.models import AuditLog

pytestmark = pytest.mark.unit

ACTORS = ["anonymous", "erin", "dave", "carol", "bob", "alice", "admin"]


def login(client, demo, actor: str):
    if actor != "anonymous":
        client.force_login(getattr(demo, actor if actor != "erin" else "outsider"))


@pytest.fixture
def vm(demo, make_host, tiny_image):
    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    return VirtualMachine.objects.get(pk=vm.pk)


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("anonymous", "login"),
        ("erin", 404),
        ("dave", 404),
        ("carol", 403),
        ("bob", 403),
        ("alice", "detail"),
        ("admin", "detail"),
    ],
)
def test_requesting_a_migration_from_the_vm_page(client, demo, vm, actor, expected):
    login(client, demo, actor)
    response = client.post(f"/t/acme/vms/{vm.name}/migrate/")
    if expected == "login":
        assert response.status_code == 302 and "/login/" in response["Location"]
    elif expected == "detail":
        # Allowed through: the test driver cannot migrate, which the page says.
        assert response.status_code == 302
        assert response["Location"] == f"/t/acme/vms/{vm.name}/"
    else:
        assert response.status_code == expected
    assert not Migration.objects.filter(phase__in=["Running", "Succeeded"]).exists()
    if expected == 403:
        assert AuditLog.objects.filter(action="vm.migrate", outcome="denied").exists()


def test_the_pages_in_place_request_gets_the_refusal_as_json_and_nothing_changes(client, demo, vm):
    """The VM page's script sends the form in place (Accept: application/json): a
    refusal comes back as the message the page shows, and no migration is queued."""
    login(client, demo, "alice")
    before = Migration.objects.count()
    response = client.post(
        f"/t/acme/vms/{vm.name}/migrate/", headers={"Accept": "application/json"}
    )
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["level"] == "error"
    assert body["message"] and "Traceback" not in body["message"]
    assert Migration.objects.count() == before
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING


@pytest.mark.parametrize(
    ("actor", "expected"),
    [("anonymous", "login"), ("erin", 404), ("dave", 404), ("carol", 403), ("bob", 403)],
)
def test_cancelling_a_migration_needs_the_tenant_admin_role(client, demo, vm, actor, expected):
    migration = Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=vm.host,
        phase="Pending",
        requested_by=demo.alice,
    )
    login(client, demo, actor)
    response = client.post(f"/t/acme/migrations/{migration.uid}/cancel/")
    if expected == "login":
        assert response.status_code == 302 and "/login/" in response["Location"]
    else:
        assert response.status_code == expected
    migration.refresh_from_db()
    assert migration.phase == "Pending"


@pytest.mark.parametrize("actor", ACTORS)
def test_staff_migration_pages_and_drain_are_for_staff_only(client, demo, vm, actor):
    login(client, demo, actor)
    host = Host.objects.get()
    pages = [
        client.get("/staff/migrations/"),
        client.get("/staff/migrations/state/"),
        client.post(f"/staff/hosts/{host.name}/drain/"),
    ]
    host.refresh_from_db()
    if actor == "admin":
        assert [p.status_code for p in pages] == [200, 200, 302]
        assert host.maintenance
    else:
        for page in pages:
            assert page.status_code == 302 and "/admin/login/" in page["Location"]
        assert not host.maintenance
