"""Live migration of a guest with a NIC (migration tier, node1 → node2): the target must
make the guest's networks before anything moves. node1 and node2 share one network
namespace on this machine, so node2 cannot start a network whose range node1 already
routes: the migration fails before the transfer, with the host's plain reason, and the
guest keeps running on node1."""

from __future__ import annotations

import secrets

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import MigrationPhase, Phase
from compute.models import Host, Network, VirtualMachine
from compute.services import migrations as migration_services
from compute.services import networks as network_services
from compute.services import vms as vm_services
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.test_migration_qemu import active_on, finished, nodes, worker  # noqa: F401

pytestmark = [pytest.mark.qemu, pytest.mark.migration]


@pytest.fixture
def networks_cleanup(nodes):  # noqa: F811 - the fixture imported above
    yield
    ours = {n.backend_name for n in Network.objects.all()}
    for host in nodes.values():
        for network in shared_connection(host.uri).listAllNetworks():
            if network.name() in ours:
                if network.isActive():
                    network.destroy()
                network.undefine()


def test_a_guest_whose_network_the_target_cannot_make_stays_running_on_its_source(
    demo,
    nodes,  # noqa: F811
    worker,  # noqa: F811
    networks_cleanup,
):
    name = f"mn-{secrets.token_hex(3)}"
    network_services.network_create(
        actor=None, tenant=demo.acme, name=name, cidr=f"10.203.{secrets.randbelow(250) + 1}.0/24"
    )
    Host.objects.filter(name="node2").update(maintenance=True)
    vm = vm_services.vm_create(
        actor=demo.alice,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=[name],
    )
    Host.objects.filter(name="node2").update(maintenance=False)
    vm = wait_phase(vm, Phase.RUNNING, timeout=300)
    assert vm.host.name == "node1"

    migration = finished(migration_services.migration_request(actor=demo.alice, vm=vm))
    assert migration.phase == MigrationPhase.FAILED
    assert "could not make the VM's networks" in migration.reason
    assert "overlapping address range" in migration.reason
    vm = VirtualMachine.objects.select_related("host").get(pk=vm.pk)
    assert (vm.phase, vm.host.name) == (Phase.RUNNING, "node1")
    assert active_on(nodes["node1"], vm) and not active_on(nodes["node2"], vm)
    # The network still works where the guest runs, and node2 keeps nothing of it.
    network = Network.objects.get(name=name)
    assert network.phase == "Ready", network.message
    node2 = [n.name() for n in shared_connection(nodes["node2"].uri).listAllNetworks()]
    assert network.backend_name not in node2
