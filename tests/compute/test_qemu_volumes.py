"""Volumes on real QEMU guests on libvirt node1 (qemu tier): a hot-plugged disk shows
in the guest's /sys/block, data written on it survives detach and re-attach, and it
grows online."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from compute.backends.libvirt.backend import SERIAL_DIR, shared_connection
from compute.choices import Phase, VolumePhase
from compute.models import Snapshot, Volume
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from tests.compute.guest import Guest
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.services.test_volumes import wait_volume
from tests.compute.test_qemu_vms import node1  # noqa: F401 - the fixture
from tests.conftest import wait_for

pytestmark = pytest.mark.qemu
GIB_SECTORS = 2 * 1024 * 1024  # 512-byte sectors in a GiB (/sys/block/*/size)


@pytest.fixture
def pool_cleanup(node1):  # noqa: F811 - the fixture imported above
    """Remove this test's volumes from node1's pool afterwards (others share it)."""
    names: list[str] = []
    yield names
    names += list(Volume.objects.values_list("backend_name", flat=True))
    for copy, memory in Snapshot.objects.values_list("backend_name", "memory_name"):
        names += [copy, memory] if memory else [copy]
    conn = shared_connection(node1.uri)
    pool = conn.storagePoolLookupByName("isotope-volumes")
    pool.refresh(0)
    for name in set(names):
        try:
            pool.storageVolLookupByName(name).delete(0)
        except Exception:  # noqa: BLE001 - gone already
            pass


def guest_of(vm) -> Guest:
    conn = shared_connection(vm.host.uri)
    return Guest(
        lambda: conn.lookupByName(vm.domain_name), Path(SERIAL_DIR) / f"{vm.domain_name}.log"
    )


def test_a_hot_plugged_volume_is_seen_by_the_guest_keeps_its_data_and_grows_online(
    demo,
    node1,  # noqa: F811
    pool_cleanup,
    celery_worker,
):
    name = f"qv-{secrets.token_hex(3)}"
    # A root disk (vda) first, so the hot-plugged volume is the guest's vdb too.
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    vm = wait_phase(vm, Phase.RUNNING, timeout=300)
    guest = guest_of(vm)
    # TCG guests on a busy machine may take minutes to boot: wait as long as it takes.
    wait_for(lambda: f"ISOTOPE-GUEST-BOOTED hostname={name}" in guest.log(), 600)
    guest.until("ls /sys/block > /dev/ttyS0", "vda")
    guest.never("ls /sys/block", "vdb")

    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name=f"{name}-data", size_gib=1
    )
    volume = wait_volume(volume, VolumePhase.READY, timeout=300)
    volume_services.volume_attach(actor=demo.bob, volume=volume, vm=vm)
    volume = wait_volume(volume, VolumePhase.ATTACHED, timeout=300)

    # The guest sees the new disk, and it is this volume (its serial).
    guest.until("cat /sys/block/vdb/serial > /dev/ttyS0", volume.serial)
    guest.until("cat /sys/block/vdb/size > /dev/ttyS0", str(GIB_SECTORS))
    marker = f"isotope{secrets.token_hex(4)}"
    guest.until(
        f"test -b /dev/vdb && echo {marker} > /dev/vdb && sync && echo wrote{marker} > /dev/ttyS0",
        f"wrote{marker}",
    )

    # Detached: the guest lets go of it (PCI unplug) …
    volume_services.volume_detach(actor=demo.bob, volume=volume)
    volume = wait_volume(volume, VolumePhase.READY, timeout=300, attached_domain="")
    guest.never("ls /sys/block", "vdb")
    # … and attached again, the data is there, read from the disk (no page cache).
    volume_services.volume_attach(actor=demo.bob, volume=volume, vm=vm)
    volume = wait_volume(volume, VolumePhase.ATTACHED, timeout=300)
    guest.until("echo 3 > /proc/sys/vm/drop_caches ; head -c 15 /dev/vdb > /dev/ttyS0", marker)

    # Grown while attached to the running guest: it sees 2 GiB at once.
    volume_services.volume_resize(actor=demo.bob, volume=volume, size_gib=2)
    wait_for(lambda: Volume.objects.get(pk=volume.pk).capacity_gib == 2, 300)
    guest.until("cat /sys/block/vdb/size > /dev/ttyS0", str(2 * GIB_SECTORS))
    info = shared_connection(node1.uri).storagePoolLookupByName("isotope-volumes")
    info.refresh(0)
    assert info.storageVolLookupByName(volume.backend_name).info()[1] == 2 * 1024**3
