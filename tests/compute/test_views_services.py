"""The Services pages without a cluster to reach (``fake_cluster``): the create form's
field errors (a selector not written as key=value, a selector label the service
refuses, a duplicate name), nothing made on a refusal, the viewer's page without the
form, and a Service's page listing the members its last sync recorded."""

from __future__ import annotations

import pytest

from compute.models import Service
from compute.services import load_balancers as service_services

pytestmark = pytest.mark.unit

URL = "/t/acme/services/"
FORM = {"name": "web", "service_type": "ClusterIP", "selector": "app=web", "protocol": "TCP"}


@pytest.fixture
def world(demo, fake_cluster):
    return demo


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"selector": "app"}, "selector", "key=value"),
        ({"selector": "app=web app"}, "selector", "Invalid value"),
        ({"port": "0"}, "port", "not a port number"),
        ({"target_port": "70000"}, "target_port", "70000 is not a port number"),
        ({"name": "Web"}, "name", "starting with a letter"),
    ],
)
def test_a_refused_form_shows_the_error_on_its_field_and_makes_nothing(
    world, client, fields, field, words
):
    client.force_login(world.bob)
    response = client.post(URL, {**FORM, "port": "80", **fields})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert words in " ".join(errors[field]), errors
    assert f'data-testid="error-{field}"'.encode() in response.content
    assert not Service.objects.exists()


def test_a_viewer_sees_the_list_and_members_but_no_form(world, client):
    service = service_services.service_create(
        actor=None, tenant=world.acme, name="web", selector={"app": "web"}, ports=[{"port": 80}]
    )
    Service.objects.filter(pk=service.pk).update(
        endpoints=[
            {"kind": "VirtualMachine", "name": "vm-1", "owner": "vm-1", "address": "10.0.0.7"}
            | {"ready": True},
            {"kind": "Pod", "name": "api-7d9-x", "owner": "api", "address": "10.244.0.9"}
            | {"ready": False},
        ]
    )
    client.force_login(world.carol)
    listing = client.get(URL)
    assert listing.status_code == 200
    assert b'data-testid="service-form"' not in listing.content
    assert b"app=web" in listing.content and b"1/2" in listing.content
    page = client.get(f"{URL}web/").content.decode()
    assert "10.0.0.7" in page and "10.244.0.9" in page
    assert "/t/acme/vms/vm-1/" in page and "/t/acme/workloads/api/" in page
    assert "Not ready" in page and 'data-testid="service-delete"' not in page
    assert client.post(URL, {**FORM, "port": "80"}).status_code == 403


def ports_post(service_type: str, *rows: dict, initial: int = 1) -> dict:
    """The change form as a browser posts it: the type and the ports table's rows."""
    data = {
        "service_type": service_type,
        "ports-TOTAL_FORMS": str(len(rows)),
        "ports-INITIAL_FORMS": str(initial),
        "ports-MIN_NUM_FORMS": "0",
        "ports-MAX_NUM_FORMS": "20",
    }
    for index, row in enumerate(rows):
        data |= {f"ports-{index}-{key}": value for key, value in row.items()}
    return data


def test_an_operator_changes_the_type_and_port_on_the_services_page(world, client):
    service = service_services.service_create(
        actor=None,
        tenant=world.acme,
        name="web",
        selector={"app": "web"},
        ports=[{"name": "http", "port": 80, "target_port": 8080}],
    )
    client.force_login(world.bob)
    page = client.get(f"{URL}web/")
    assert page.context["form"].initial == {"service_type": "ClusterIP"}
    assert [f.initial for f in page.context["formset"].initial_forms] == [
        {"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080}
    ]
    html = page.content.decode()
    assert 'data-testid="service-change-form"' in html
    assert 'name="ports-0-target_port" id="id_ports-0-target_port" value="8080"' in html
    assert 'name="ports-1-port"' in html  # the blank row that adds a port

    http = {"name": "http", "protocol": "TCP"}
    refused = client.post(f"{URL}web/edit/", ports_post("NodePort", {**http, "port": "70000"}))
    assert refused.status_code == 400
    row = refused.context["formset"].forms[0]
    assert "70000 is not a port number" in " ".join(row.errors["port"])
    assert b'data-testid="error-ports-0-port"' in refused.content
    unchanged = Service.objects.get(pk=service.pk)
    assert (unchanged.service_type, unchanged.generation) == ("ClusterIP", 1)

    done = client.post(
        f"{URL}web/edit/",
        ports_post("NodePort", {**http, "port": "81", "target_port": ""}, {"protocol": "TCP"}),
        follow=True,
    )
    assert done.redirect_chain == [(f"{URL}web/", 302)]
    assert "Service web is being changed: NodePort." in done.content.decode()
    changed = Service.objects.get(pk=service.pk)
    assert changed.service_type == "NodePort" and changed.generation == 2
    assert changed.ports == [{"name": "http", "protocol": "TCP", "port": 81, "targetPort": 81}]


def test_ports_are_added_changed_and_removed_in_the_ports_table(world, client):
    ports = [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
    service = service_services.service_create(
        actor=None, tenant=world.acme, name="web", selector={"app": "web"}, ports=ports
    )
    client.force_login(world.bob)
    page = client.get(f"{URL}web/")
    assert [f.initial["name"] for f in page.context["formset"].initial_forms] == ["http", "https"]
    http = {"name": "http", "protocol": "TCP", "port": "80"}
    https = {"name": "https", "protocol": "TCP", "port": "443"}
    # A third port without a name beside two: its row says why, nothing changes.
    refused = client.post(
        f"{URL}web/edit/",
        ports_post("ClusterIP", http, https, {"protocol": "UDP", "port": "53"}, initial=2),
    )
    assert refused.status_code == 400
    assert "Name each port" in " ".join(refused.context["formset"].forms[2].errors["name"])
    assert b'data-testid="error-ports-2-name"' in refused.content
    # Every row removed: the table says a Service needs one.
    gone = {**http, "DELETE": "on"}
    refused = client.post(
        f"{URL}web/edit/", ports_post("ClusterIP", gone, {**https, "DELETE": "on"}, initial=2)
    )
    assert refused.status_code == 400 and b'data-testid="error-ports"' in refused.content
    assert Service.objects.get(pk=service.pk).generation == 1

    # https removed, dns added, http moved to 8080 on the members.
    client.post(
        f"{URL}web/edit/",
        ports_post(
            "ClusterIP",
            {**http, "target_port": "8080"},
            {**https, "DELETE": "on"},
            {"name": "dns", "protocol": "UDP", "port": "53"},
            initial=2,
        ),
    )
    changed = Service.objects.get(pk=service.pk)
    assert changed.ports == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
        {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
    ]
    assert changed.generation == 2
    # A post without the table (a script, an older page) changes only the type.
    client.post(f"{URL}web/edit/", {"service_type": "NodePort"})
    changed = Service.objects.get(pk=service.pk)
    assert changed.service_type == "NodePort" and len(changed.ports) == 2


def test_a_viewer_gets_no_change_form_and_cannot_post_one(world, client):
    service_services.service_create(
        actor=None, tenant=world.acme, name="web", selector={"app": "web"}, ports=[{"port": 80}]
    )
    client.force_login(world.carol)
    assert b'data-testid="service-change-form"' not in client.get(f"{URL}web/").content
    assert (
        client.post(f"{URL}web/edit/", {"service_type": "NodePort", "port": "80"}).status_code
        == 403
    )
    assert Service.objects.get(name="web").service_type == "ClusterIP"
    client.force_login(world.dave)  # globex
    assert (
        client.post(f"{URL}web/edit/", {"service_type": "NodePort", "port": "80"}).status_code
        == 404
    )
