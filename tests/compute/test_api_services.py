"""The Services API: the resource shape, bad input on its field path with nothing
created (bad selector, port 0 or 70000, a duplicate port name), Idempotency-Key,
If-Match on PATCH and DELETE, other tenants' Services are 404, roles.

No Celery worker and no reachable cluster here (``fake_cluster``): Services are
accepted (202) and stay Pending; their sync is tested on the real API server in
tests/compute/kubernetes/test_services.py."""

from __future__ import annotations

import pytest

from compute.models import Service
from monitoring.models import Event
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_volumes import problem

pytestmark = pytest.mark.unit

BASE = "/api/v1/tenants/acme/services/"


def body(name="web", selector=None, ports=None, **spec) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": "web"} if selector is None else selector,
            "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}],
            **spec,
        },
    }


@pytest.fixture
def world(demo, fake_cluster):
    return demo


def test_a_service_is_created_read_changed_and_deleted_in_the_resource_shape(world, api):
    response = api(world.bob).post(BASE, body(type="NodePort"), format="json")
    assert response.status_code == 202, response.content
    assert response["Location"].endswith("/api/v1/tenants/acme/services/web/")
    data = response.json()
    assert response["ETag"] == f'"{data["metadata"]["resourceVersion"]}"'
    assert data["spec"] == {
        "type": "NodePort",
        "selector": {"app": "web"},
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
    }
    assert data["status"]["phase"] == "Pending" and data["status"]["endpoints"] == []
    assert data["status"]["actions"] == ["update", "delete"]
    viewer = api(world.carol).get(BASE).json()
    assert [s["metadata"]["name"] for s in viewer["items"]] == ["web"]
    assert viewer["items"][0]["status"]["actions"] == []
    assert api(world.carol).get(f"{BASE}?phase=Nope").status_code == 400
    assert AuditLog.objects.filter(action="service.create", target="service/web").exists()
    assert Event.objects.filter(kind="service", name="web", reason="Created").exists()

    stale = api(world.bob).patch(
        f"{BASE}web/", {"spec": {"selector": {"app": "api"}}}, format="json", HTTP_IF_MATCH='"99"'
    )
    problem(stale, 412)
    changed = api(world.bob).patch(
        f"{BASE}web/",
        {"spec": {"selector": {"app": "api"}, "ports": [{"port": 53, "protocol": "UDP"}]}},
        format="json",
        HTTP_IF_MATCH=response["ETag"],
    )
    assert changed.status_code == 202, changed.content
    spec = changed.json()["spec"]
    assert spec["selector"] == {"app": "api"}
    assert spec["ports"] == [{"name": "", "protocol": "UDP", "port": 53, "targetPort": 53}]
    assert Service.objects.get(name="web").generation == 2
    assert AuditLog.objects.filter(action="service.update", target="service/web").exists()

    gone = api(world.bob).delete(f"{BASE}web/", HTTP_IF_MATCH=changed["ETag"])
    assert gone.status_code == 202 and gone.json()["status"]["phase"] == "Deleting"
    assert gone.json()["status"]["actions"] == []
    assert AuditLog.objects.filter(action="service.delete", target="service/web").exists()


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"selector": {"app": "web app"}}, "spec.selector", "Invalid value"),
        ({"selector": {"-bad": "x"}}, "spec.selector", "Invalid key"),
        ({"selector": {}}, "spec.selector", "at least one label"),
        ({"selector": ["app"]}, "spec.selector", "map of strings"),
        ({"ports": [{"port": 0}]}, "spec.ports[0].port", "not a port number (1–65535)"),
        ({"ports": [{"port": 70000}]}, "spec.ports[0].port", "70000 is not a port number"),
        ({"ports": [{"port": 80, "targetPort": 0}]}, "spec.ports[0].targetPort", "not a port"),
        (
            {"ports": [{"port": 80, "targetPort": "Web_Port"}]},
            "spec.ports[0].targetPort",
            "Web_Port is neither a port number (1–65535) nor a container port name",
        ),
        ({"ports": [{"port": 80, "targetPort": "8-0"}]}, "spec.ports[0].targetPort", "neither"),
        (
            {"ports": [{"port": 80, "targetPort": "a-very-long-port-name"}]},
            "spec.ports[0].targetPort",
            "neither",
        ),
        (
            {"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]},
            "spec.ports[1].name",
            "Another port is named http",
        ),
        (
            {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]},
            "spec.ports[1].port",
            "listed twice",
        ),
        ({"ports": [{"port": 80}, {"port": 81}]}, "spec.ports[0].name", "Name each port"),
        ({"ports": [{"port": 80, "protocol": "SCTP"}]}, "spec.ports[0].protocol", "TCP or UDP"),
        ({"ports": [{"name": "Http!", "port": 80}]}, "spec.ports[0].name", "At most 15"),
    ],
)
def test_bad_input_is_a_400_on_its_field_and_nothing_is_created(world, api, spec, field, words):
    payload = body()
    payload["spec"].update(spec)
    refused = problem(api(world.bob).post(BASE, payload, format="json"), 400)
    assert words in " ".join(refused["errors"][field]), refused
    assert not Service.objects.exists()
    assert not AuditLog.objects.filter(action="service.create").exists()


def test_bad_names_and_types_are_refused_on_their_fields(world, api):
    bad = problem(api(world.bob).post(BASE, body(name="1web"), format="json"), 400)
    assert "starting with a letter" in bad["errors"]["metadata.name"][0]
    kind = problem(api(world.bob).post(BASE, body(type="LoadBalancer"), format="json"), 400)
    assert "spec.type" in kind["errors"]
    assert api(world.bob).post(BASE, body(), format="json").status_code == 202
    twice = problem(api(world.bob).post(BASE, body(), format="json"), 400)
    assert "exists already" in twice["errors"]["metadata.name"][0]
    assert Service.objects.count() == 1


def test_a_bad_patch_changes_nothing(world, api):
    api(world.bob).post(BASE, body(), format="json")
    before = Service.objects.get(name="web")
    refused = api(world.bob).patch(f"{BASE}web/", {"spec": {"ports": [{"port": 0}]}}, format="json")
    assert "spec.ports[0].port" in problem(refused, 400)["errors"]
    after = Service.objects.get(name="web")
    assert (after.ports, after.resource_version) == (before.ports, before.resource_version)


def test_a_retried_create_with_the_same_key_returns_the_first_service(world, api):
    client = api(world.bob)
    first = client.post(BASE, body(), format="json", HTTP_IDEMPOTENCY_KEY="s1")
    again = client.post(BASE, body(), format="json", HTTP_IDEMPOTENCY_KEY="s1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert Service.objects.filter(tenant=world.acme, name="web").count() == 1


def test_another_tenants_service_is_404_and_a_viewer_cannot_write(world, api):
    api(world.bob).post(BASE, body(), format="json")
    for method in ("get", "patch", "delete"):
        response = getattr(api(world.dave), method)(f"{BASE}web/", {}, format="json")
        assert response.status_code == 404, (method, response.content)
    assert api(world.dave).get("/api/v1/tenants/globex/services/web/").status_code == 404
    assert api(world.dave).get(BASE).status_code == 404
    assert api(world.outsider).get(BASE).status_code == 404
    refused = api(world.carol).post(BASE, body(name="db"), format="json")
    problem(refused, 403)
    assert AuditLog.objects.filter(
        action="service.create", outcome=AuditOutcome.DENIED, actor=world.carol
    ).exists()
    assert api(world.carol).delete(f"{BASE}web/").status_code == 403
    assert Service.objects.filter(name="web").exists()


def test_the_type_changes_through_patch_audited_with_an_event_and_a_bad_one_changes_nothing(
    world, api
):
    created = api(world.bob).post(BASE, body(), format="json")
    changed = api(world.bob).patch(
        f"{BASE}web/",
        {"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 81}]}},
        format="json",
        HTTP_IF_MATCH=created["ETag"],
    )
    assert changed.status_code == 202, changed.content
    spec = changed.json()["spec"]
    assert spec["type"] == "NodePort"
    assert spec["ports"] == [{"name": "http", "protocol": "TCP", "port": 81, "targetPort": 81}]
    service = Service.objects.get(name="web")
    assert (service.service_type, service.generation) == ("NodePort", 2)
    audit = AuditLog.objects.get(action="service.update", target="service/web")
    assert audit.detail["service_type"] == "NodePort"
    event = Event.objects.get(kind="service", name="web", reason="SpecChanged")
    assert event.message == "ports and type changed (generation 2)."

    refused = api(world.bob).patch(f"{BASE}web/", {"spec": {"type": "LoadBalancer"}}, format="json")
    assert "spec.type" in problem(refused, 400)["errors"]
    same = api(world.bob).patch(f"{BASE}web/", {"spec": {"type": "NodePort"}}, format="json")
    assert same.status_code == 202
    back = api(world.bob).patch(f"{BASE}web/", {"spec": {"type": "ClusterIP"}}, format="json")
    assert back.json()["spec"]["type"] == "ClusterIP"
    service = Service.objects.get(name="web")
    assert (service.service_type, service.generation) == ("ClusterIP", 3)
    assert (
        api(world.carol)
        .patch(f"{BASE}web/", {"spec": {"type": "NodePort"}}, format="json")
        .status_code
        == 403
    )
    assert Service.objects.get(name="web").service_type == "ClusterIP"


def test_a_named_target_port_is_kept_as_the_name(world, api):
    """A targetPort given as a name is a pod's container port name, resolved per pod."""
    payload = body(ports=[{"name": "http", "port": 80, "targetPort": "p8080"}])
    created = api(world.bob).post(BASE, payload, format="json")
    assert created.status_code == 202, created.content
    assert created.json()["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "p8080"}
    ]
    assert Service.objects.get(name="web").ports[0]["targetPort"] == "p8080"
