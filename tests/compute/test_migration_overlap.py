"""Live migration never chooses, nor lets staff pin, a host where another tenant's
network overlapping one of the VM's networks is active: libvirt could not start the
VM's network there (one route per range on a host). Requests and the job's start on
libvirt's test driver (hosts marked as able to migrate; no migration runs)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from compute.choices import MigrationPhase, Phase
from compute.models import Host, Migration, VirtualMachine
from compute.services import migrations as migration_services
from compute.services import networks as network_services
from compute.services import vms as vm_services
from portal.exceptions import Conflict, ValidationError

pytestmark = pytest.mark.libvirt_test_driver


def vm_on(tenant, name: str, host: Host) -> VirtualMachine:
    network_services.network_create(actor=None, tenant=tenant, name="lab", cidr="10.50.0.0/24")
    vm = vm_services.vm_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=["lab"],
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(host=host, phase=Phase.RUNNING)
    return VirtualMachine.objects.select_related("tenant", "host").get(pk=vm.pk)


@pytest.fixture
def hosts(demo, make_host, tiny_image):
    made = {name: make_host(name) for name in ("node-a", "node-b", "node-c")}
    Host.objects.update(capabilities={"live_migration": True, "volumes": True})
    return {name: Host.objects.get(pk=h.pk) for name, h in made.items()}


def test_a_host_running_an_overlapping_network_of_another_tenant_is_never_the_target(demo, hosts):
    staff = get_user_model().objects.create_user("ops", is_staff=True)
    mine = vm_on(demo.acme, "web1", hosts["node-a"])
    vm_on(demo.globex, "theirs", hosts["node-b"])  # 10.50.0.0/24 too, on node-b
    assert network_services.vm_hosts_with_overlap(mine) == {hosts["node-b"].pk}

    # Pinned there by staff: refused with the reason, nothing queued.
    with pytest.raises(ValidationError) as refused:
        migration_services.migration_request(actor=staff, vm=mine, target="node-b")
    assert refused.value.message.startswith("node-b: The target host runs another tenant's")
    # With node-c off, no host is left for the scheduler either.
    Host.objects.filter(name="node-c").update(enabled=False)
    with pytest.raises(Conflict):
        migration_services.migration_request(actor=demo.alice, vm=mine)
    assert not Migration.objects.exists()

    # node-c back: the job starts towards it, never node-b.
    Host.objects.filter(name="node-c").update(enabled=True)
    migration = migration_services.migration_request(actor=demo.alice, vm=mine)
    Migration.objects.filter(pk=migration.pk).update(phase=MigrationPhase.SCHEDULING)
    started = migration_services.migration_begin(migration)
    assert started is not None and started.target.name == "node-c"


def test_a_pinned_target_that_came_to_clash_fails_the_job_with_the_reason(demo, hosts):
    staff = get_user_model().objects.create_user("ops", is_staff=True)
    mine = vm_on(demo.acme, "web1", hosts["node-a"])
    migration = migration_services.migration_request(actor=staff, vm=mine, target="node-b")
    # Meanwhile another tenant's overlapping network went active on node-b.
    vm_on(demo.globex, "theirs", hosts["node-b"])
    Migration.objects.filter(pk=migration.pk).update(phase=MigrationPhase.SCHEDULING)
    assert migration_services.migration_begin(migration) is None
    failed = Migration.objects.get(pk=migration.pk)
    assert failed.phase == MigrationPhase.FAILED
    assert "target host runs another tenant's network" in failed.reason
    assert "node-b" not in failed.reason  # tenants read it: hosts stay hidden
    assert VirtualMachine.objects.get(pk=mine.pk).host.name == "node-a"
