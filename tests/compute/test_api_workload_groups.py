"""A workload's security groups through the API and the pages: create with
``spec.securityGroups`` (field errors name it, nothing is created), ``PATCH`` with
``If-Match`` (labels and groups in one change: a refused half leaves both), another
tenant's workload is 404; the workload page lists its groups with an "Edit groups" form
for operators, the create form offers the tenant's groups, a group's page lists the
workloads whose pods are in it."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from compute.models import Workload
from compute.services import security_groups as group_services
from compute.services import workloads as services

pytestmark = pytest.mark.unit

BASE = "/api/v1/tenants/acme/workloads/"
PAGES = "/t/acme/workloads/"


@pytest.fixture
def world(demo, fake_cluster):
    group_services.default_group(demo.acme)
    for name in ("web", "db"):
        group_services.group_create(actor=None, tenant=demo.acme, name=name, rules=[])
    group_services.group_create(actor=None, tenant=demo.globex, name="secret", rules=[])
    return demo


def body(name="front", **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {"image": "nginx:1.27", **spec}}


def errors(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return json.loads(response.content)["errors"]


def groups_of(name: str) -> list[str]:
    return services.workload_groups(Workload.objects.get(name=name))


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_create_names_the_groups_and_the_representation_shows_them(world, api):
    response = api(world.bob).post(BASE, body(securityGroups=["web"]), format="json")
    assert response.status_code == 202, response.content
    assert response.data["spec"]["securityGroups"] == ["web"]
    plain = api(world.bob).post(BASE, body("plain"), format="json")
    assert plain.data["spec"]["securityGroups"] == ["default"]
    listed = {w["metadata"]["name"]: w for w in api(world.carol).get(BASE).data["items"]}
    assert listed["front"]["spec"]["securityGroups"] == ["web"]


@pytest.mark.parametrize("groups", [["nope"], ["secret"], "web"])
def test_bad_groups_on_create_are_a_field_error_and_create_nothing(world, api, groups):
    response = api(world.bob).post(BASE, body(securityGroups=groups), format="json")
    assert "spec.securityGroups" in errors(response, 400)
    assert not Workload.objects.filter(name="front").exists()


def test_patch_moves_the_pods_with_if_match_and_labels_in_one_change(world, api):
    services.workload_create(actor=None, tenant=world.acme, name="front", image="nginx:1.27")
    client = api(world.bob)
    etag = client.get(f"{BASE}front/")["ETag"]
    response = client.patch(
        f"{BASE}front/",
        {"metadata": {"labels": {"app": "web"}}, "spec": {"securityGroups": ["web", "db"]}},
        format="json",
        HTTP_IF_MATCH=etag,
    )
    assert response.status_code == 202, response.content
    assert response.data["spec"]["securityGroups"] == ["db", "web"]
    assert response.data["metadata"]["labels"] == {"app": "web"}
    stale = client.patch(
        f"{BASE}front/", {"spec": {"securityGroups": ["db"]}}, format="json", HTTP_IF_MATCH=etag
    )
    assert stale.status_code == 412
    assert groups_of("front") == ["db", "web"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"spec": {"securityGroups": []}}, "spec.securityGroups"),
        ({"spec": {"securityGroups": ["secret"]}}, "spec.securityGroups"),
        (
            {"metadata": {"labels": {"app": "api"}}, "spec": {"securityGroups": ["nope"]}},
            "spec.securityGroups",
        ),
        ({}, "non_field_errors"),
    ],
)
def test_a_bad_groups_patch_changes_nothing(world, api, data, field):
    workload = services.workload_create(
        actor=None, tenant=world.acme, name="front", image="nginx:1.27", labels={"app": "web"}
    )
    response = api(world.bob).patch(f"{BASE}front/", data, format="json")
    assert field in errors(response, 400), response.content
    row = Workload.objects.get(pk=workload.pk)
    assert (row.labels, row.resource_version) == ({"app": "web"}, workload.resource_version)
    assert groups_of("front") == ["default"]


def test_another_tenants_workload_is_404_and_a_viewer_is_refused(world, api):
    services.workload_create(actor=None, tenant=world.globex, name="hidden", image="nginx:1.27")
    services.workload_create(actor=None, tenant=world.acme, name="front", image="nginx:1.27")
    move = {"spec": {"securityGroups": ["secret"]}}
    other = api(world.bob).patch("/api/v1/tenants/globex/workloads/hidden/", move, format="json")
    assert other.status_code == 404
    viewer = api(world.carol).patch(
        f"{BASE}front/", {"spec": {"securityGroups": ["web"]}}, format="json"
    )
    assert viewer.status_code == 403
    assert groups_of("hidden") == groups_of("front") == ["default"]


def test_the_pages_show_and_change_a_workloads_groups(world):
    services.workload_create(
        actor=None, tenant=world.acme, name="front", image="nginx:1.27", security_groups=["web"]
    )
    viewer = client_for(world.carol).get(f"{PAGES}front/").content.decode()
    assert 'data-testid="workload-groups"' in viewer and ">web</a>" in viewer
    assert 'data-testid="workload-edit-groups"' not in viewer
    move = {"security_groups": ["db"]}
    assert client_for(world.carol).post(f"{PAGES}front/groups/", move).status_code == 403
    assert client_for(world.dave).post(f"{PAGES}front/groups/", move).status_code == 404
    assert Client().post(f"{PAGES}front/groups/", move).status_code == 302  # to sign in
    assert groups_of("front") == ["web"]

    bob = client_for(world.bob)
    page = bob.post(f"{PAGES}front/groups/", {"security_groups": ["db"]}, follow=True)
    html = page.content.decode()
    assert "The pods of front are in db now." in html
    assert "bob put its pods in db (were in web)." in html  # on its timeline
    refused = bob.post(f"{PAGES}front/groups/", {}, follow=True).content.decode()
    assert "Choose at least one security group." in refused
    assert groups_of("front") == ["db"]

    group_page = bob.get("/t/acme/securitygroups/db/").content.decode()
    assert 'data-testid="securitygroup-workloads"' in group_page
    assert f'href="{PAGES}front/"' in group_page
    assert f'href="{PAGES}front/"' not in bob.get("/t/acme/securitygroups/web/").content.decode()


def test_the_create_form_offers_the_tenants_groups(world):
    bob = client_for(world.bob)
    form = bob.get(f"{PAGES}new/").content.decode()
    assert 'value="web"' in form and 'value="secret"' not in form
    data = {
        "name": "front",
        "kind": "Deployment",
        "image": "nginx:1.27",
        "replicas": "1",
        "cpu_request": "100m",
        "memory_request": "64Mi",
        "security_groups": ["web", "db"],
    }
    response = bob.post(f"{PAGES}new/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert groups_of("front") == ["db", "web"]
    refused = bob.post(f"{PAGES}new/", {**data, "name": "other", "security_groups": ["secret"]})
    assert refused.status_code == 400
    assert not Workload.objects.filter(name="other").exists()


def test_copy_as_new_names_only_the_groups_the_workload_names(world):
    from compute.workload_api import workload_create_document

    plain = services.workload_create(
        actor=None, tenant=world.acme, name="plain", image="nginx:1.27"
    )
    named = services.workload_create(
        actor=None, tenant=world.acme, name="named", image="nginx:1.27", security_groups=["web"]
    )
    assert "securityGroups" not in workload_create_document(plain)["spec"]
    assert workload_create_document(named)["spec"]["securityGroups"] == ["web"]
