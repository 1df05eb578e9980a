"""The network and interface API and pages: shape, the role matrix of the interface
routes (they need a VM), other tenants, bad input on its field, Idempotency-Key,
If-Match, pagination, and the refusal to delete a network that has interfaces.

No Celery worker here: interfaces are accepted (202) and stay Pending; the tests that
need a worker are in tests/compute/services/test_networks.py."""

from __future__ import annotations

import pytest

from compute.choices import NetworkPhase, NicPhase
from compute.models import Network, NetworkInterface
from compute.services import networks as network_services
from compute.services import security_groups as group_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_volumes import make_vm, problem

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

NETS = "/api/v1/tenants/acme/networks/"
NICS = "/api/v1/tenants/acme/virtualmachines/web1/nics/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    demo.vm = make_vm(demo)  # the tenant's first VM: it brings the default network
    return demo


def net(name="lab", cidr="192.168.50.0/24", **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}


def test_a_network_is_created_listed_and_deleted_in_the_resource_shape(world, api):
    response = api(world.bob).post(NETS, net(kind="nat", dhcpStart="192.168.50.100"), format="json")
    assert response.status_code == 202, response.content
    assert response["Location"].endswith("/api/v1/tenants/acme/networks/lab/")
    data = response.json()
    assert response["ETag"] == f'"{data["metadata"]["resourceVersion"]}"'
    assert data["spec"] == {
        "cidr": "192.168.50.0/24",
        "gateway": "192.168.50.1",
        "dhcpStart": "192.168.50.100",
        "dhcpEnd": "192.168.50.254",
        "kind": "nat",
    }
    assert data["status"]["phase"] == "Ready" and "bridge" not in data["status"]
    listed = api(world.carol).get(NETS).json()
    assert [n["metadata"]["name"] for n in listed["items"]] == ["default", "lab"]
    assert listed["items"][0]["status"]["default"] is True
    assert api(world.admin).get(f"{NETS}lab/").json()["status"]["bridge"].startswith("isob")
    assert api(world.carol).get(f"{NETS}?phase=Nope").status_code == 400

    stale = api(world.alice).delete(f"{NETS}lab/", HTTP_IF_MATCH='"999"')
    problem(stale, 412)
    gone = api(world.alice).delete(f"{NETS}lab/", HTTP_IF_MATCH=response["ETag"])
    assert gone.status_code == 202 and gone.json()["status"]["phase"] == "Deleting"


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"cidr": "10.0.0.0/30"}, "spec.cidr", "too small"),
        ({"cidr": "10.0.0.7/24"}, "spec.cidr", "host bits"),
        ({"cidr": "10.0.0.0/24", "gateway": "10.0.1.1"}, "spec.gateway", "outside"),
        ({"cidr": "10.0.0.0/24", "dhcpEnd": "10.0.0.0"}, "spec.dhcpEnd", "network or broadcast"),
    ],
)
def test_bad_input_is_a_field_error_at_the_api_path_and_changes_nothing(
    world, api, spec, field, words
):
    body = problem(
        api(world.bob).post(NETS, {"metadata": {"name": "bad"}, "spec": spec}, format="json"), 400
    )
    assert words in " ".join(body["errors"][field])
    assert not Network.objects.filter(name="bad").exists()


def test_a_retried_create_with_the_same_key_returns_the_first_network(world, api):
    client = api(world.bob)
    first = client.post(NETS, net(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = client.post(NETS, net(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert Network.objects.filter(tenant=world.acme, name="lab").count() == 1


def test_overlapping_networks_between_tenants_are_allowed(world, api):
    assert api(world.bob).post(NETS, net(), format="json").status_code == 202
    other = api(world.dave).post("/api/v1/tenants/globex/networks/", net(), format="json")
    assert other.status_code == 202
    assert api(world.dave).get(f"{NETS}lab/").status_code == 404


def test_interfaces_are_added_listed_and_removed_and_keep_the_network(world, api):
    api(world.bob).post(NETS, net(), format="json")
    response = api(world.bob).post(
        NICS, {"spec": {"network": "lab", "fixedIP": "192.168.50.10"}}, format="json"
    )
    assert response.status_code == 202, response.content
    data = response.json()
    assert response["Location"].endswith(f"{NICS}nic0/")
    assert data["metadata"]["vm"] == "web1" and data["spec"]["mac"].startswith("52:54:00:")
    assert data["spec"]["fixedIP"] == "192.168.50.10"
    assert data["status"] == {
        "phase": "Pending",
        "message": "",
        "addresses": [],
        "actions": ["delete", "groups"],
    }
    bad = problem(api(world.bob).post(NICS, {"spec": {"network": "nope"}}, format="json"), 400)
    assert "No network named 'nope'" in bad["errors"]["spec.network"][0]
    taken = problem(
        api(world.bob).post(
            NICS, {"spec": {"network": "lab", "fixedIP": "192.168.50.10"}}, format="json"
        ),
        400,
    )
    assert "reserved" in taken["errors"]["spec.fixedIP"][0]

    in_use = problem(api(world.alice).delete(f"{NETS}lab/"), 409)
    assert "web1/nic0" in in_use["detail"]
    assert Network.objects.get(name="lab").phase == NetworkPhase.READY

    assert [n["metadata"]["name"] for n in api(world.carol).get(NICS).json()["items"]] == ["nic0"]
    removed = api(world.bob).delete(f"{NICS}nic0/")
    assert removed.status_code == 202 and removed.json()["status"]["phase"] == "Detaching"
    assert NetworkInterface.objects.get(name="nic0").phase == NicPhase.DETACHING


ROLE_STATUS = {
    # who: (list, get, add, change groups, remove)
    "alice": (200, 200, 202, 202, 202),
    "bob": (200, 200, 202, 202, 202),
    "carol": (200, 200, 403, 403, 403),
    "dave": (404, 404, 404, 404, 404),
    "outsider": (404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ROLE_STATUS))
def test_the_role_matrix_for_every_interface_route(world, api, client, who):
    user = getattr(world, who)
    network_services.nic_create(actor=None, vm=world.vm, network="default")
    group_services.group_create(actor=None, tenant=world.acme, name="web")
    before = set(NetworkInterface.objects.values_list("name", "phase", "security_groups__name"))
    rest = api(user)
    groups = {"spec": {"securityGroups": ["web"]}}
    got = (
        rest.get(NICS).status_code,
        rest.get(f"{NICS}nic0/").status_code,
        rest.post(NICS, {"spec": {"network": "default"}}, format="json").status_code,
        rest.patch(f"{NICS}nic0/", groups, format="json").status_code,
        rest.delete(f"{NICS}nic0/").status_code,
    )
    assert got == ROLE_STATUS[who]
    client.force_login(user)
    page = "/t/acme/vms/web1/nics/"
    web = (
        client.post(page, {"network": "default"}).status_code,
        client.post(f"{page}nic1/groups/", {"security_groups": ["web"]}).status_code,
        client.post(f"{page}nic0/remove/").status_code,
    )
    allowed = ROLE_STATUS[who][2] == 202
    assert web == ((302, 302, 302) if allowed else (ROLE_STATUS[who][2],) * 3)
    after = set(NetworkInterface.objects.values_list("name", "phase", "security_groups__name"))
    if allowed:
        assert {("nic0", "Detaching", "web"), ("nic1", "Pending", "web")} <= after
        assert AuditLog.objects.filter(
            action="nic.attach", actor=user, outcome=AuditOutcome.SUCCESS
        ).exists()
        assert (
            AuditLog.objects.filter(
                action="nic.update", actor=user, outcome=AuditOutcome.SUCCESS
            ).count()
            == 2
        )
    else:
        assert after == before
    if who == "carol":
        assert AuditLog.objects.filter(
            action="nic.attach", actor=user, outcome=AuditOutcome.DENIED
        ).exists()


def test_the_vm_and_networks_pages_show_interfaces_and_refuse_by_role(world, client):
    network_services.nic_create(actor=None, vm=world.vm, network="default", fixed_ip="")
    client.force_login(world.carol)
    page = client.get("/t/acme/vms/web1/").content.decode()
    assert 'data-testid="nic-nic0"' in page and 'data-testid="vm-nic-form"' not in page
    listing = client.get("/t/acme/networks/").content.decode()
    assert 'data-testid="network-default"' in listing and "network-form" not in listing
    assert client.post("/t/acme/networks/", {"name": "x", "cidr": "10.7.0.0/24"}).status_code == 403
    client.force_login(world.bob)
    assert 'data-testid="vm-nic-form"' in client.get("/t/acme/vms/web1/").content.decode()
    refused = client.post("/t/acme/networks/", {"name": "x", "cidr": "10.7.0.0/30"})
    assert refused.status_code == 400 and "too small" in refused.content.decode()
    assert not Network.objects.filter(name="x").exists()


def test_a_vm_is_created_with_interfaces_on_named_networks(world, api):
    body = {
        "metadata": {"name": "web2"},
        "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 256, "networks": ["default"]},
    }
    response = api(world.bob).post("/api/v1/tenants/acme/virtualmachines/", body, format="json")
    assert response.status_code == 202, response.content
    nics = api(world.bob).get("/api/v1/tenants/acme/virtualmachines/web2/nics/").json()["items"]
    assert [(n["metadata"]["name"], n["spec"]["network"]) for n in nics] == [("nic0", "default")]
    body["metadata"]["name"] = "web3"
    body["spec"]["networks"] = ["nope"]
    refused = api(world.bob).post("/api/v1/tenants/acme/virtualmachines/", body, format="json")
    assert "nope" in problem(refused, 400)["errors"]["spec.networks"][0]
