"""A VM's and a workload's YAML/JSON page shows exactly what the API returns to the same
user; a bad format is a 400 with the reason; another tenant's object is a 404."""

from __future__ import annotations

import html
import json
import re

import pytest
import yaml
from django.test import Client
from rest_framework.test import APIClient

from compute.services import vms as vm_services
from tests.compute.test_views_workloads import make
from tests.compute.test_views_workloads import world as workload_world  # noqa: F401

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


def shown(response) -> str:
    match = re.search(
        r'data-testid="manifest"[^>]*><code>(.*?)</code>', response.content.decode(), re.S
    )
    return html.unescape(match.group(1))


def test_the_vm_page_shows_the_api_answer_in_yaml_and_json(demo, make_host, tiny_image):
    make_host("node-a")
    vm_services.vm_create(
        actor=None,
        tenant=demo.acme,
        name="web-1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        labels={"tier": "web"},
    )
    for user in (demo.carol, demo.admin):  # staff see the host in both
        api = APIClient()
        api.force_authenticate(user)
        expected = api.get("/api/v1/tenants/acme/virtualmachines/web-1/").json()
        client = Client()
        client.force_login(user)
        page = client.get("/t/acme/vms/web-1/manifest/")
        assert page.status_code == 200
        assert yaml.safe_load(shown(page)) == expected
        page = client.get("/t/acme/vms/web-1/manifest/?format=json")
        assert json.loads(shown(page)) == expected
    bad = client.get("/t/acme/vms/web-1/manifest/?format=xml")
    assert bad.status_code == 400
    assert "Unknown format &#x27;xml&#x27;: choose yaml or json." in bad.content.decode()
    outsider = Client()
    outsider.force_login(demo.dave)
    assert outsider.get("/t/acme/vms/web-1/manifest/").status_code == 404


def test_the_workload_page_shows_the_api_answer(workload_world):  # noqa: F811
    make(workload_world, "shop", labels={"tier": "web"})
    api = APIClient()
    api.force_authenticate(workload_world.bob)
    expected = api.get("/api/v1/tenants/acme/workloads/shop/").json()
    client = Client()
    client.force_login(workload_world.bob)
    page = client.get("/t/acme/workloads/shop/manifest/")
    assert yaml.safe_load(shown(page)) == expected
    assert client.get("/t/acme/workloads/nope/manifest/").status_code == 404
