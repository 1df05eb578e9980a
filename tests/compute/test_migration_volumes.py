"""A VM's local volumes follow it through live migration between node1 and node2
(migration tier): data the guest wrote on its data volume before is read back after,
from the disk, on the other host; the migration records the disk copy's progress."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from compute.backends.libvirt.backend import SERIAL_DIR, shared_connection
from compute.choices import MigrationPhase, Phase, VolumePhase
from compute.models import Host, VirtualMachine, Volume
from compute.services import migrations as migration_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from tests.compute.guest import Guest
from tests.compute.services.test_volumes import wait_volume
from tests.compute.test_migration_qemu import (  # noqa: F401 - fixtures and helpers
    finished,
    nodes,
    phase,
    policy,
    worker,
)
from tests.conftest import wait_for

pytestmark = [pytest.mark.qemu, pytest.mark.migration]
POOL = "isotope-volumes"


@pytest.fixture
def cleanup(nodes):  # noqa: F811 - the fixture imported above
    """Remove this test's domains and volumes from both nodes afterwards."""
    yield
    domains = {vm.domain_name for vm in VirtualMachine.objects.all()}
    files = set(Volume.objects.values_list("backend_name", flat=True))
    for host in nodes.values():
        conn = shared_connection(host.uri)
        for name in domains:
            try:
                domain = conn.lookupByName(name)
                if domain.isActive():
                    domain.destroy()
                if domain.isPersistent():
                    domain.undefine()
            except Exception:  # noqa: BLE001 - not on this node
                pass
        try:
            pool = conn.storagePoolLookupByName(POOL)
            pool.refresh(0)
        except Exception:  # noqa: BLE001 - no pool there
            continue
        for name in files:
            try:
                pool.storageVolLookupByName(name).delete(0)
            except Exception:  # noqa: BLE001 - not on this node
                pass


def pool_files(host) -> set[str]:
    pool = shared_connection(host.uri).storagePoolLookupByName(POOL)
    pool.refresh(0)
    return set(pool.listVolumes())


def guest_of(vm) -> Guest:
    """The guest wherever it runs now (the VM's host is read again on every key)."""

    def domain():
        host = VirtualMachine.objects.select_related("host").get(pk=vm.pk).host
        return shared_connection(host.uri).lookupByName(vm.domain_name)

    return Guest(domain, Path(SERIAL_DIR) / f"{vm.domain_name}.log")


def test_a_local_data_volume_follows_its_vm_through_live_migration_with_its_data(
    demo,
    nodes,  # noqa: F811 - the fixture imported above
    worker,  # noqa: F811
    cleanup,
):
    policy(bandwidth_mib=64)
    name = f"mv-{secrets.token_hex(3)}"
    Host.objects.filter(name="node2").update(maintenance=True)
    vm = vm_services.vm_create(
        actor=demo.alice,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,  # a root volume (vda), copied too
    )
    Host.objects.filter(name="node2").update(maintenance=False)
    wait_for(lambda: phase(vm) == Phase.RUNNING, 300, message=f"{vm} never ran")
    vm = VirtualMachine.objects.select_related("tenant", "host").get(pk=vm.pk)
    assert vm.host.name == "node1"
    guest = guest_of(vm)
    # TCG guests on a busy machine may take minutes to boot: wait as long as it takes.
    wait_for(lambda: f"ISOTOPE-GUEST-BOOTED hostname={name}" in guest.log(), 600)

    data = volume_services.volume_create(
        actor=demo.alice, tenant=demo.acme, name=f"{name}-data", size_gib=1, vm=vm
    )
    data = wait_volume(data, VolumePhase.ATTACHED, timeout=300)
    root = Volume.objects.get(vm=vm, device="vda")
    # By its serial: Linux names disks in the order it finds them, not after libvirt.
    disk = guest.disk(data.serial)
    marker = f"isotope{secrets.token_hex(4)}"
    guest.until(
        f"test -b /dev/{disk} && echo {marker} > /dev/{disk} && sync && "
        f"echo wrote{marker} > /dev/ttyS0",
        f"wrote{marker}",
    )
    assert {data.backend_name, root.backend_name} <= pool_files(nodes["node1"])

    migration = migration_services.migration_request(actor=demo.alice, vm=vm)
    migration = finished(migration, timeout=900)
    assert migration.phase == MigrationPhase.SUCCEEDED, migration.reason
    vm = VirtualMachine.objects.select_related("host").get(pk=vm.pk)
    assert vm.host.name == "node2" and vm.phase == Phase.RUNNING
    # The disks were copied (1 GiB each), and the migration recorded it.
    assert migration.disk_total >= 2 * 1024**3 and migration.disk_processed > 0
    for volume in (data, root):
        volume = Volume.objects.get(pk=volume.pk)
        assert volume.host.name == "node2" and volume.phase == VolumePhase.ATTACHED
        assert volume.backend_name in pool_files(nodes["node2"])
        # The source copy goes right after the migration is marked Succeeded.
        wait_for(
            lambda v=volume: v.backend_name not in pool_files(nodes["node1"]),
            60,
            message=f"the source copy of {volume.name} stayed on node1",
        )
    # The guest on node2 reads the marker back from the disk, not from its page cache.
    guest.until(f"echo 3 > /proc/sys/vm/drop_caches ; head -c 15 /dev/{disk} > /dev/ttyS0", marker)
    assert guest.log().count("ISOTOPE-GUEST-BOOTED") in (1, 2)  # no reboot on the way

    # A volume attached after the move is made on node2 and reaches the guest there.
    late = volume_services.volume_create(
        actor=demo.alice, tenant=demo.acme, name=f"{name}-late", size_gib=1, vm=vm
    )
    late = wait_volume(late, VolumePhase.ATTACHED, timeout=300)
    assert late.host.name == "node2" and late.backend_name in pool_files(nodes["node2"])
    guest.disk(late.serial)
