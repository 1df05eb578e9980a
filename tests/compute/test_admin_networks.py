"""Networks, security groups and Services in Django admin: platform staff see every
tenant's, read-only (ranges, bridges, interfaces, rules, cluster IPs, member counts);
nothing is added, changed or deleted there; tenant members who are not staff do not
get in."""

from __future__ import annotations

import pytest

from compute.models import Network, SecurityGroup, Service
from compute.services import load_balancers as service_services
from compute.services import networks as network_services
from compute.services import security_groups
from compute.services import vms as vm_services

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


@pytest.fixture
def world(demo, make_host, tiny_image, fake_cluster):
    make_host("node-a")
    network_services.network_create(actor=None, tenant=demo.acme, name="lab", cidr="10.60.0.0/24")
    network_services.network_create(actor=None, tenant=demo.globex, name="lab", cidr="10.60.0.0/24")
    vm_services.vm_create(
        actor=None,
        tenant=demo.acme,
        name="web1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        networks=["lab"],
    )
    group = security_groups.group_create(actor=None, tenant=demo.acme, name="web")
    security_groups.rule_add(
        actor=None,
        group=group,
        direction="ingress",
        protocol="tcp",
        port_min=80,
        port_max=80,
        remote_cidr="0.0.0.0/0",
    )
    service_services.service_create(
        actor=None, tenant=demo.acme, name="front", selector={"app": "web"}, ports=[{"port": 80}]
    )
    return demo


def test_staff_see_every_tenants_networks_groups_and_services_read_only(client, world):
    client.force_login(world.admin)
    networks = client.get("/admin/compute/network/").content.decode()
    assert networks.count("10.60.0.0/24") == 2 and "globex" in networks and "acme" in networks
    lab = Network.objects.get(tenant=world.acme, name="lab")
    detail = client.get(f"/admin/compute/network/{lab.pk}/change/").content.decode()
    assert "nic0" in detail and "web1" in detail  # its interfaces, inline
    assert 'name="_save"' not in detail
    group = SecurityGroup.objects.get(tenant=world.acme, name="web")
    rules = client.get(f"/admin/compute/securitygroup/{group.pk}/change/").content.decode()
    assert "0.0.0.0/0" in rules and "ingress" in rules.lower()
    services = client.get("/admin/compute/service/").content.decode()
    assert "front" in services and "ClusterIP" in services
    for model in ("network", "securitygroup", "service"):
        assert client.get(f"/admin/compute/{model}/add/").status_code == 403
    client.post(f"/admin/compute/network/{lab.pk}/change/", {"name": "renamed"})
    client.post(f"/admin/compute/network/{lab.pk}/delete/", {"post": "yes"})
    assert Network.objects.get(pk=lab.pk).name == "lab"
    assert Service.objects.filter(name="front").exists()
    client.force_login(world.alice)
    assert client.get("/admin/compute/network/").status_code == 302
