"""Moving an existing interface to other security groups through the API (PATCH of
``spec.securityGroups`` with If-Match) and the VM page's "Edit groups" form: the new
groups in the resource and the row, field errors that change nothing, another tenant's
groups and interfaces. The role matrix of both routes is in test_api_networks.py.

No Celery worker here: the filter tasks are queued; tests/compute/test_qemu_security_groups.py
checks the filter of a running guest."""

from __future__ import annotations

import re

import pytest

from compute.models import NetworkInterface
from compute.services import networks as network_services
from compute.services import security_groups as group_services
from tests.compute.test_api_volumes import make_vm, problem

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

NIC = "/api/v1/tenants/acme/virtualmachines/web1/nics/nic0/"
PAGE = "/t/acme/vms/web1/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    demo.vm = make_vm(demo)
    demo.nic = network_services.nic_create(actor=None, vm=demo.vm, network="default")
    group_services.group_create(actor=None, tenant=demo.acme, name="web")
    group_services.group_create(actor=None, tenant=demo.acme, name="db")
    return demo


def groups(names) -> dict:
    return {"spec": {"securityGroups": names}}


def test_a_patch_with_if_match_moves_the_interface_to_other_groups(world, api):
    client = api(world.bob)
    read = client.get(NIC)
    assert read.json()["spec"]["securityGroups"] == ["default"]
    assert read.json()["status"]["actions"] == ["delete", "groups"]
    problem(client.patch(NIC, groups(["web"]), format="json", HTTP_IF_MATCH='"999"'), 412)
    changed = client.patch(NIC, groups(["web", "db"]), format="json", HTTP_IF_MATCH=read["ETag"])
    assert changed.status_code == 202, changed.content
    data = changed.json()
    assert sorted(data["spec"]["securityGroups"]) == ["db", "web"]
    version = int(read.json()["metadata"]["resourceVersion"])
    assert data["metadata"]["resourceVersion"] == str(version + 1)
    assert changed["ETag"] != read["ETag"]
    assert sorted(client.get(NIC).json()["spec"]["securityGroups"]) == ["db", "web"]


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (groups(["nope"]), "spec.securityGroups", "No security group named 'nope'"),
        (groups([]), "spec.securityGroups", "Choose at least one security group."),
        (groups(["theirs"]), "spec.securityGroups", "No security group named 'theirs'"),
        ({"spec": {"securityGroups": ["web"], "network": "lab"}}, "spec.network", ""),
        ({"spec": {}}, "spec.securityGroups", ""),
    ],
)
def test_bad_groups_are_a_field_error_at_the_api_path_and_nothing_changes(
    world, api, body, path, words
):
    group_services.group_create(actor=None, tenant=world.globex, name="theirs")
    version = NetworkInterface.objects.get(pk=world.nic.pk).resource_version
    refused = problem(api(world.bob).patch(NIC, body, format="json"), 400)
    assert words in " ".join(refused["errors"][path])
    nic = NetworkInterface.objects.get(pk=world.nic.pk)
    assert [g.name for g in nic.security_groups.all()] == ["default"]
    assert nic.resource_version == version


def test_another_tenants_interface_is_not_found(world, api):
    theirs = NIC.replace("acme", "globex")
    problem(api(world.bob).patch(theirs, groups(["web"]), format="json"), 404)
    problem(api(world.dave).patch(NIC, groups(["web"]), format="json"), 404)


def row(page: str, nic: str) -> str:
    match = re.search(rf'<tr data-nic-row="{nic}".*?</tr>', page, re.S)
    assert match, f"no row for {nic}"
    return match.group(0)


def test_the_edit_groups_form_shows_the_groups_posts_and_shows_the_result(world, client):
    client.force_login(world.carol)
    assert 'data-testid="nic-edit-groups"' not in client.get(PAGE).content.decode()

    client.force_login(world.bob)
    shown = row(client.get(PAGE).content.decode(), "nic0")
    assert 'data-testid="nic-edit-groups"' in shown
    assert re.search(r'value="default" id="nic-nic0-sg-default"\s+checked', shown)
    assert not re.search(r'value="web" id="nic-nic0-sg-web"\s+checked', shown)

    moved = client.post(f"{PAGE}nics/nic0/groups/", {"security_groups": ["web", "db"]}, follow=True)
    page = moved.content.decode()
    assert "nic0 of web1 is in web, db now." in page
    cell = re.search(r'data-testid="nic-groups">(.*?)</td>', row(page, "nic0"), re.S).group(1)
    assert re.findall(r">(\w+)</a>", cell) == ["db", "web"]

    refused = client.post(f"{PAGE}nics/nic0/groups/", {}, follow=True).content.decode()
    assert "Choose at least one security group." in refused
    nic = NetworkInterface.objects.get(pk=world.nic.pk)
    assert sorted(g.name for g in nic.security_groups.all()) == ["db", "web"]

    client.force_login(world.dave)
    assert client.post(f"{PAGE}nics/nic0/groups/", {"security_groups": ["web"]}).status_code == 404
