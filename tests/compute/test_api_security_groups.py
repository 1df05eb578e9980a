"""Security groups through the API and the pages: the default group, rules in the
resource shape, field errors at their paths (nothing saved), If-Match, deletion
refusals, interfaces choosing groups, other tenants, the rule-remove route's role
matrix, and the nwfilter each group and interface becomes.

No Celery worker here: the filter tasks are queued; tests/compute/test_qemu_security_groups.py
checks them on a real host."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from compute.backends.libvirt import xml
from compute.models import NetworkInterface, SecurityGroup, SecurityGroupRule
from compute.services import networks as network_services
from compute.services import security_groups as group_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_volumes import make_vm, problem

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

GROUPS = "/api/v1/tenants/acme/securitygroups/"
NICS = "/api/v1/tenants/acme/virtualmachines/web1/nics/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    demo.vm = make_vm(demo)
    return demo


def rule(**fields) -> dict:
    return {"direction": "ingress", "protocol": "tcp", "remoteCIDR": "0.0.0.0/0", **fields}


def test_the_first_interface_brings_the_default_group_with_its_two_rules(world, api):
    network_services.nic_create(actor=None, vm=world.vm, network="default")
    listed = api(world.carol).get(GROUPS).json()["items"]
    assert [g["metadata"]["name"] for g in listed] == ["default"]
    default = listed[0]
    assert default["status"]["default"] is True and default["status"]["interfaces"] >= 1
    rules = [{k: v for k, v in r.items() if k != "id"} for r in default["spec"]["rules"]]
    assert rules == [
        {
            "direction": "ingress",
            "protocol": "any",
            "portMin": None,
            "portMax": None,
            "remoteCIDR": None,
            "remoteGroup": "default",
        },
        {
            "direction": "egress",
            "protocol": "any",
            "portMin": None,
            "portMax": None,
            "remoteCIDR": "0.0.0.0/0",
            "remoteGroup": None,
        },
    ]
    nic = NetworkInterface.objects.filter(vm=world.vm).first()
    assert [g.name for g in nic.security_groups.all()] == ["default"]


def test_a_group_is_created_read_patched_with_if_match_and_deleted(world, api):
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "description": "HTTP in",
            "rules": [rule(portMin=80), rule(portMin="8000", portMax=8080, remoteGroup=None)],
        },
    }
    created = api(world.bob).post(GROUPS, body, format="json")
    assert created.status_code == 202, created.content
    assert created["Location"].endswith(f"{GROUPS}web/")
    data = created.json()
    assert [(r["portMin"], r["portMax"]) for r in data["spec"]["rules"]] == [(80, 80), (8000, 8080)]
    assert data["status"]["actions"] == ["update"]  # bob operates; deleting is for admins
    etag = created["ETag"]

    patch = {
        "spec": {"rules": [rule(protocol="udp", portMin=53, remoteGroup="web", remoteCIDR="")]}
    }
    problem(api(world.bob).patch(f"{GROUPS}web/", patch, format="json", HTTP_IF_MATCH='"99"'), 412)
    changed = api(world.bob).patch(f"{GROUPS}web/", patch, format="json", HTTP_IF_MATCH=etag)
    assert changed.status_code == 202, changed.content
    assert changed["ETag"] != etag
    (only,) = changed.json()["spec"]["rules"]
    assert (only["protocol"], only["portMin"], only["remoteGroup"]) == ("udp", 53, "web")
    assert changed.json()["spec"]["description"] == "HTTP in"
    assert AuditLog.objects.filter(
        action="securitygroup.update", actor=world.bob, outcome=AuditOutcome.SUCCESS
    ).exists()

    assert api(world.dave).get(f"{GROUPS}web/").status_code == 404
    problem(api(world.bob).delete(f"{GROUPS}web/"), 403)
    problem(api(world.alice).delete(f"{GROUPS}web/", HTTP_IF_MATCH=etag), 412)
    assert api(world.alice).delete(f"{GROUPS}web/").status_code == 204
    assert not SecurityGroup.objects.filter(name="web").exists()
    assert not SecurityGroupRule.objects.filter(group__name="web").exists()


@pytest.mark.parametrize(
    ("bad", "path", "words"),
    [
        (rule(portMin=70000), "spec.rules[1].portMin", "not a port number"),
        (rule(portMin="http"), "spec.rules[1].portMin", "not a port number"),
        (rule(portMin=90, portMax=80), "spec.rules[1].portMax", "before it starts"),
        (rule(protocol="icmp", portMin=22), "spec.rules[1].portMin", "TCP and UDP only"),
        (rule(remoteCIDR="10.0.0.300/24"), "spec.rules[1].remoteCIDR", "not an IPv4 network"),
        (rule(remoteCIDR="10.0.0.1/24"), "spec.rules[1].remoteCIDR", "host bits"),
        (rule(remoteCIDR=""), "spec.rules[1].remoteCIDR", "Give the other side"),
        (rule(remoteCIDR="", remoteGroup="nope"), "spec.rules[1].remoteGroup", "No security"),
        (rule(protocol="gre"), "spec.rules.1.protocol", "not a valid choice"),
    ],
)
def test_a_bad_rule_is_a_field_error_at_its_path_and_nothing_is_saved(world, api, bad, path, words):
    body = {"metadata": {"name": "bad"}, "spec": {"rules": [rule(portMin=22), bad]}}
    data = problem(api(world.bob).post(GROUPS, body, format="json"), 400)
    assert words in " ".join(data["errors"][path]), data
    assert not SecurityGroup.objects.filter(name="bad").exists()


def test_the_default_group_and_a_group_in_use_or_named_by_rules_are_kept(world, api):
    network_services.nic_create(actor=None, vm=world.vm, network="default")
    group_services.group_create(actor=None, tenant=world.acme, name="db")
    group_services.group_create(
        actor=None,
        tenant=world.acme,
        name="app",
        rules=[{"direction": "egress", "protocol": "tcp", "port_min": 5432, "remote_group": "db"}],
    )
    assert (
        "default security group"
        in problem(api(world.alice).delete(f"{GROUPS}default/"), 409)["detail"]
    )
    assert "app" in problem(api(world.alice).delete(f"{GROUPS}db/"), 409)["detail"]
    network_services.nic_create(actor=None, vm=world.vm, network="default", security_groups=["app"])
    assert "1 interface" in problem(api(world.alice).delete(f"{GROUPS}app/"), 409)["detail"]
    assert set(SecurityGroup.objects.values_list("name", flat=True)) == {"default", "db", "app"}


def test_an_interface_names_its_groups_and_an_unknown_one_is_refused(world, api):
    group_services.group_create(actor=None, tenant=world.acme, name="web")
    added = api(world.bob).post(
        NICS, {"spec": {"network": "default", "securityGroups": ["web"]}}, format="json"
    )
    assert added.status_code == 202, added.content
    assert added.json()["spec"]["securityGroups"] == ["web"]
    refused = api(world.bob).post(
        NICS, {"spec": {"network": "default", "securityGroups": ["nope"]}}, format="json"
    )
    assert "nope" in problem(refused, 400)["errors"]["spec.securityGroups"][0]
    plain = api(world.bob).post(NICS, {"spec": {"network": "default"}}, format="json")
    assert plain.json()["spec"]["securityGroups"] == ["default"]
    # Another tenant's group of the same name is not found.
    group_services.group_create(actor=None, tenant=world.globex, name="theirs")
    other = api(world.bob).post(
        NICS, {"spec": {"network": "default", "securityGroups": ["theirs"]}}, format="json"
    )
    assert "theirs" in problem(other, 400)["errors"]["spec.securityGroups"][0]


def test_the_rule_editor_adds_shows_refuses_and_removes_rules(world, client):
    group_services.group_create(actor=None, tenant=world.acme, name="web")
    page = "/t/acme/securitygroups/web/"
    client.force_login(world.bob)
    bad = client.post(
        page,
        {
            "direction": "ingress",
            "protocol": "tcp",
            "port_min": "99999",
            "remote_cidr": "0.0.0.0/0",
        },
    )
    assert bad.status_code == 400
    assert 'data-testid="error-port_min"' in bad.content.decode()
    assert not SecurityGroupRule.objects.filter(group__name="web").exists()
    good = client.post(
        page,
        {"direction": "ingress", "protocol": "tcp", "port_min": "443", "remote_cidr": "10.0.0.0/8"},
    )
    assert good.status_code == 302
    shown = client.get(page).content.decode()
    assert 'data-rule="ingress tcp 443 10.0.0.0/8"' in shown
    (made,) = SecurityGroupRule.objects.filter(group__name="web")

    # The remove route by role: viewers are refused (and see no editor), others remove.
    remove = f"{page}rules/{made.pk}/remove/"
    client.force_login(world.carol)
    viewer_page = client.get(page).content.decode()
    assert 'data-testid="rule-form"' not in viewer_page and "rule-remove-1" not in viewer_page
    assert client.post(remove).status_code == 403
    client.force_login(world.dave)
    assert client.post(remove).status_code == 404
    assert SecurityGroupRule.objects.filter(pk=made.pk).exists()
    client.force_login(world.bob)
    assert client.post(remove).status_code == 302
    assert not SecurityGroupRule.objects.filter(pk=made.pk).exists()
    assert (
        AuditLog.objects.filter(
            action="securitygroup.update", actor=world.bob, outcome=AuditOutcome.SUCCESS
        ).count()
        == 2
    )


def test_a_group_becomes_an_nwfilter_and_an_interface_a_filter_that_drops_the_rest(world):
    nic = network_services.nic_create(actor=None, vm=world.vm, network="default")
    network = nic.network
    NetworkInterface.objects.filter(pk=nic.pk).update(fixed_ip=network.dhcp_start)
    nic.refresh_from_db()
    default = SecurityGroup.objects.get(tenant=world.acme, name="default")
    web = group_services.group_create(
        actor=None,
        tenant=world.acme,
        name="web",
        rules=[
            {
                "direction": "ingress",
                "protocol": "tcp",
                "port_min": 80,
                "port_max": 81,
                "remote_cidr": "10.1.0.0/16",
            },
            {"direction": "egress", "protocol": "udp", "port_min": 53, "remote_group": "default"},
        ],
    )
    spec = group_services.group_filter_spec(default)
    assert spec.name == f"isotope-sg-{default.uid}"
    root = ET.fromstring(xml.filter_xml(spec))
    macs = {
        r.find("all").get("srcmacaddr") for r in root.iter("rule") if r.get("direction") == "in"
    }
    assert nic.mac in macs  # from its own members
    rules = [(r.get("direction"), r[0].tag, dict(r[0].attrib)) for r in root.iter("rule")]
    assert ("out", "all", {"dstipaddr": "0.0.0.0", "dstipmask": "0"}) in rules
    assert ("in", "all", {"srcipaddr": network.dhcp_start, "srcipmask": "32"}) in rules

    web_rules = ET.fromstring(xml.filter_xml(group_services.group_filter_spec(web)))
    got = [(r.get("direction"), r[0].tag, dict(r[0].attrib)) for r in web_rules.iter("rule")]
    assert got == [
        (
            "in",
            "tcp",
            {"srcipaddr": "10.1.0.0", "srcipmask": "16", "dstportstart": "80", "dstportend": "81"},
        ),
        (
            "out",
            "udp",
            {
                "dstipaddr": network.dhcp_start,
                "dstipmask": "32",
                "dstportstart": "53",
                "dstportend": "53",
            },
        ),
    ]

    nic_filter = ET.fromstring(xml.filter_xml(group_services.nic_filter_spec(nic)))
    assert [f.get("filter") for f in nic_filter.iter("filterref")] == [default.filter_name]
    drops = [
        (r.get("action"), r.get("direction"), r[0].tag)
        for r in nic_filter.iter("rule")
        if int(r.get("priority")) == max(int(x.get("priority")) for x in nic_filter.iter("rule"))
    ]
    # The rest is dropped, IPv6 included (no rule allows any: it would bypass the groups).
    assert drops == [("drop", "inout", "all"), ("drop", "inout", "all-ipv6")]
    iface = ET.fromstring(xml.interface_xml(network_services.vm_nic_spec(nic)))
    assert iface.find("filterref").get("filter") == nic.filter_name
