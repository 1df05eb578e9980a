"""Each host's console (VNC) port range: edited in Django admin with a clear refusal when
it overlaps another host's on the same machine, given to existing hosts by the data
migration, and counted by the scheduler."""

from __future__ import annotations

import pytest
from django.db import transaction

from compute.models import Host, VirtualMachine
from compute.models.hosts import machine_of
from tenants.models import AuditLog

pytestmark = pytest.mark.unit


def change_host(client, host: Host, **fields):
    """POST Django admin's change form of ``host`` with its values and ``fields``."""
    data = {
        "name": host.name,
        "uri": host.uri,
        "virt_type": host.virt_type,
        "cpu_ratio": "4.00",
        "memory_ratio": "1.00",
        "enabled": "on",
        "labels": "{}",
        "vnc_port_min": host.vnc_port_min,
        "vnc_port_max": host.vnc_port_max,
        # A browser posts the tunnel fields as the form shows them.
        "tunnel_address": host.tunnel_address or "",
        "tunnel_port": host.tunnel_port,
        **fields,
    }
    return client.post(f"/admin/compute/host/{host.pk}/change/", data)


@pytest.fixture
def two_local(db):
    node1 = Host.objects.create(name="node1", uri="qemu:///system")
    node2 = Host.objects.create(
        name="node2",
        uri="qemu+tcp://127.0.0.1:16510/system",
        vnc_port_min=6400,
        vnc_port_max=6899,
    )
    return node1, node2


def test_an_overlapping_range_on_the_same_machine_is_refused_and_nothing_changes(
    client, demo, two_local
):
    node1, node2 = two_local
    client.force_login(demo.admin)
    response = change_host(client, node2, vnc_port_min=6300, vnc_port_max=6899)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Ports 6300–6899 overlap node1&#x27;s console ports (5900–6399)" in text
    assert "choose another range, e.g. 6400–6899" in text
    node2.refresh_from_db()
    assert (node2.vnc_port_min, node2.vnc_port_max) == (6400, 6899)
    assert not AuditLog.objects.filter(action="host.update").exists()


def test_a_reversed_or_out_of_bounds_range_is_refused(client, demo, two_local):
    _, node2 = two_local
    client.force_login(demo.admin)
    reversed_range = change_host(client, node2, vnc_port_min=6800, vnc_port_max=6500)
    assert "The last console port must be at least 6800." in reversed_range.content.decode()
    too_low = change_host(client, node2, vnc_port_min=5000)
    assert "greater than or equal to 5900" in too_low.content.decode()
    node2.refresh_from_db()
    assert (node2.vnc_port_min, node2.vnc_port_max) == (6400, 6899)


def test_a_free_range_is_saved_and_audited_and_other_machines_may_overlap(client, demo, two_local):
    _, node2 = two_local
    remote = Host.objects.create(name="rack7", uri="qemu+tcp://10.0.0.7/system")
    client.force_login(demo.admin)
    assert change_host(client, node2, vnc_port_min=7000, vnc_port_max=7099).status_code == 302
    assert change_host(client, remote, vnc_port_min=6400, vnc_port_max=6899).status_code == 302
    assert Host.objects.get(name="node2").vnc_ports == (7000, 7099)
    assert Host.objects.get(name="rack7").vnc_ports == (6400, 6899)
    entry = AuditLog.objects.filter(action="host.update").first()
    assert {"vnc_port_min", "vnc_port_max"} <= set(entry.detail["fields"])
    changelist = client.get("/admin/compute/host/").content.decode()
    assert "7000–7099" in changelist


def test_hosts_on_one_machine_share_its_ports():
    assert machine_of("qemu:///system") == machine_of("qemu+tcp://127.0.0.1:16510/system")
    assert machine_of("qemu+ssh://root@localhost/system") == "local"
    assert machine_of("qemu+tcp://10.0.0.7/system") == "10.0.0.7"
    assert machine_of("test:///default") == ""


def test_the_data_migration_gives_hosts_on_one_machine_separate_blocks(migrate_to):
    old = migrate_to([("compute", "0011_volumes")])
    OldHost = old.get_model("compute", "Host")
    for name, uri in [
        ("node1", "qemu:///system"),
        ("node2", "qemu+tcp://127.0.0.1:16510/system"),
        ("rack7", "qemu+tcp://10.0.0.7/system"),
        ("test", "test:///default"),
    ]:
        OldHost.objects.create(name=name, uri=uri)
    new = migrate_to([("compute", "0012_host_vnc_ports")])
    hosts = new.get_model("compute", "Host").objects.all()
    ranges = {h.name: (h.vnc_port_min, h.vnc_port_max) for h in hosts}
    assert ranges == {
        "node1": (5900, 6399),
        "node2": (6400, 6899),
        "rack7": (5900, 6399),
        "test": (5900, 6399),
    }


def test_a_host_whose_console_ports_are_all_given_out_takes_no_new_vm(demo, tiny_image):
    from compute.scheduler import NoHostAvailable, schedule

    full = Host.objects.create(
        name="rack7",
        uri="qemu+tcp://10.0.0.7/system",
        reachable=True,
        cpus=8,
        memory_mib=16384,
        capabilities={"console": True},
        vnc_port_min=6000,
        vnc_port_max=6001,
    )
    for name in ("web1", "web2"):
        VirtualMachine.objects.create(
            tenant=demo.acme, name=name, vcpus=1, memory_mib=256, image=tiny_image, host=full
        )
    with pytest.raises(NoHostAvailable) as refused, transaction.atomic():
        schedule(vcpus=1, memory_mib=256)
    assert refused.value.message == "0/1 hosts can take this VM: 1 with no free console port."
    Host.objects.filter(pk=full.pk).update(vnc_port_max=6002)
    with transaction.atomic():
        assert schedule(vcpus=1, memory_mib=256).host == full
