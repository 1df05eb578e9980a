"""Migration 0019: interfaces made before security groups are in their tenant's new
default group (with its two rules); a tenant without interfaces gets none yet."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.unit

BEFORE = [("compute", "0020_backups")]
AFTER = [("compute", "0021_security_groups")]


def test_existing_interfaces_join_their_tenants_default_group(migrate_to):
    old = migrate_to(BEFORE)
    Tenant = old.get_model("tenants", "Tenant")
    Image = old.get_model("compute", "Image")
    VM = old.get_model("compute", "VirtualMachine")
    Network = old.get_model("compute", "Network")
    NIC = old.get_model("compute", "NetworkInterface")
    acme = Tenant.objects.create(slug="acme", name="ACME")
    Tenant.objects.create(slug="globex", name="Globex")
    kernel = Image.objects.create(name="tiny", kind="kernel", kernel_path="/k", initrd_path="/i")
    vm = VM.objects.create(
        uid=uuid.uuid4(), tenant=acme, name="web", vcpus=1, memory_mib=256, image=kernel
    )
    network = Network.objects.create(
        tenant=acme,
        name="default",
        cidr="10.0.0.0/24",
        gateway="10.0.0.1",
        dhcp_start="10.0.0.2",
        dhcp_end="10.0.0.254",
        bridge="isob0000000001",
    )
    for index in range(2):
        NIC.objects.create(
            tenant=acme, vm=vm, network=network, name=f"nic{index}", mac=f"52:54:00:00:00:0{index}"
        )

    new = migrate_to(AFTER)
    Group = new.get_model("compute", "SecurityGroup")
    NIC = new.get_model("compute", "NetworkInterface")
    (group,) = Group.objects.all()
    assert (group.tenant.slug, group.name, group.is_default) == ("acme", "default", True)
    rules = sorted(
        (r.direction, r.protocol, r.remote_cidr, r.remote_group_id) for r in group.rules.all()
    )
    assert rules == [("egress", "any", "0.0.0.0/0", None), ("ingress", "any", "", group.pk)]
    for nic in NIC.objects.all():
        assert [g.pk for g in nic.security_groups.all()] == [group.pk]
