"""Migration API and roles on libvirt's test driver (no live migration there)."""

from __future__ import annotations

import pytest

from compute.choices import MigrationPhase, Phase
from compute.models import Migration, VirtualMachine
from compute.services import vms as vm_services

pytestmark = pytest.mark.libvirt_test_driver


@pytest.fixture
def running_vm(demo, make_host, tiny_image):
    make_host("test1")
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    vm.refresh_from_db()
    return vm


def url(vm_name="web1", tenant="acme"):
    return f"/api/v1/tenants/{tenant}/virtualmachines/{vm_name}/migrate/"


def test_a_host_without_live_migration_is_refused_at_once_with_a_clear_problem(
    demo, api, running_vm
):
    response = api(demo.alice).post(url(), {}, format="json")
    assert response.status_code == 409
    assert response["Content-Type"].startswith("application/problem+json")
    assert "does not support live migration" in response.json()["detail"]
    assert "test1" not in response.json()["detail"]  # hosts stay hidden from tenants
    assert not Migration.objects.exists()


def test_viewers_and_operators_may_not_migrate_and_other_tenants_see_nothing(demo, api, running_vm):
    assert api(demo.carol).post(url(), {}, format="json").status_code == 403
    assert api(demo.bob).post(url(), {}, format="json").status_code == 403
    assert api(demo.dave).post(url(tenant="acme"), {}, format="json").status_code == 404
    assert api(demo.dave).get("/api/v1/tenants/acme/migrations/").status_code == 404
    assert api(demo.carol).get("/api/v1/tenants/acme/migrations/").status_code == 200


def test_only_staff_choose_the_target(demo, api, running_vm):
    response = api(demo.alice).post(url(), {"target": "test1"}, format="json")
    assert response.status_code == 403


def test_a_queued_migration_is_listed_without_hosts_and_cancelled_at_once(demo, api, running_vm):
    migration = Migration.objects.create(
        tenant=demo.acme,
        vm=running_vm,
        vm_name="web1",
        source=running_vm.host,
        phase=MigrationPhase.PENDING,
        reason="Queued",
    )
    listed = api(demo.carol).get("/api/v1/tenants/acme/migrations/").json()["items"]
    assert [m["metadata"]["name"] for m in listed] == [str(migration.uid)]
    assert "sourceHost" not in listed[0]["status"]
    cancel = f"/api/v1/tenants/acme/migrations/{migration.uid}/cancel/"
    assert api(demo.carol).post(cancel).status_code == 403
    response = api(demo.alice).post(cancel)
    assert response.status_code == 202
    assert response.json()["status"]["phase"] == "Cancelled"
    assert api(demo.alice).post(cancel).status_code == 409
    staff = api(demo.admin).get(f"/api/v1/tenants/acme/migrations/{migration.uid}/").json()
    assert staff["status"]["sourceHost"] == "test1"
