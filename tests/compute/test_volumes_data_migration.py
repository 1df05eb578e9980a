"""Migration 0011: every existing VM's root disk becomes a Volume, charged once."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.unit

BEFORE = [
    ("compute", "0010_observed_generation"),
    ("tenants", "0004_slug_ends_at_end_of_string"),
]
AFTER = [("compute", "0011_volumes"), ("tenants", "0005_reservation_kind_volume")]


def test_existing_root_disks_become_volumes_and_their_storage_moves_once(migrate_to):
    old = migrate_to(BEFORE)
    Tenant = old.get_model("tenants", "Tenant")
    Quota = old.get_model("tenants", "Quota")
    Reservation = old.get_model("tenants", "Reservation")
    Host = old.get_model("compute", "Host")
    Image = old.get_model("compute", "Image")
    VM = old.get_model("compute", "VirtualMachine")
    tenant = Tenant.objects.create(slug="acme", name="ACME")
    Quota.objects.create(
        tenant=tenant, cpu=16, memory=32768, storage=200, vms=20, pods=50, used_storage=12
    )
    host = Host.objects.create(name="node1", uri="qemu:///system")
    test_host = Host.objects.create(name="t1", uri="test:///default")
    kernel = Image.objects.create(name="tiny", kind="kernel", kernel_path="/k", initrd_path="/i")
    disk = Image.objects.create(name="deb", kind="disk", disk_path="/base.qcow2")
    rows = []
    for name, image, gib, where, legacy in [
        ("web", disk, 10, host, "acme--web"),
        ("db", kernel, 2, test_host, ""),
        ("diskless", kernel, 0, host, ""),
    ]:
        vm = VM.objects.create(
            uid=uuid.uuid4(),
            tenant=tenant,
            name=name,
            vcpus=1,
            memory_mib=256,
            disk_gib=gib,
            image=image,
            host=where,
            legacy_domain_name=legacy,
        )
        Reservation.objects.create(
            tenant=tenant, ref=f"vm:{vm.uid}", kind="vm", cpu=1, memory=256, vms=1, storage=gib
        )
        rows.append(vm)
    # A volume named like the root disk would be cannot exist yet; names are free.
    new = migrate_to(AFTER)
    Volume = new.get_model("compute", "Volume")
    Reservation = new.get_model("tenants", "Reservation")
    Quota = new.get_model("tenants", "Quota")
    web, db, _diskless = rows
    volumes = {v.name: v for v in Volume.objects.all()}
    assert set(volumes) == {"web-root", "db-root"}
    root = volumes["web-root"]
    assert (root.vm_id, root.device, root.size_gib, root.phase) == (web.pk, "vda", 10, "Attached")
    assert (root.pool, root.backend_name, root.host_id) == ("isotope", "acme--web.qcow2", host.pk)
    assert (root.created_from, root.source_image_id) == ("image", disk.pk)
    assert root.delete_with_vm
    assert (root.attached_domain, root.attached_device) == ("acme--web", "vda")
    other = volumes["db-root"]
    assert (other.pool, other.backend_name) == ("default-pool", f"isotope-{db.uid}.qcow2")
    assert other.created_from == "blank"
    live = Reservation.objects.filter(released__isnull=True)
    assert live.get(ref=f"vm:{web.uid}").storage == 0
    assert live.get(ref=f"volume:{root.uid}").storage == 10
    assert live.get(ref=f"volume:{other.uid}").storage == 2
    assert sum(live.values_list("storage", flat=True)) == 12
    assert Quota.objects.get(tenant_id=tenant.pk).used_storage == 12  # unchanged: charged once

    # And back: the storage returns to the VMs' reservations.
    old = migrate_to(BEFORE)
    Reservation = old.get_model("tenants", "Reservation")
    assert Reservation.objects.get(ref=f"vm:{web.uid}").storage == 10
    assert not Reservation.objects.filter(ref__startswith="volume:").exists()
    migrate_to(AFTER)
