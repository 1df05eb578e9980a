"""Bad input is a clear 4xx problem (or a form error) and changes nothing; never a 500.

One focused regression test per input that used to crash or slip through: markup in
names, names and env names with a trailing newline, label and nodeSelector maps without
limits, garbage headers, wrong JSON types, non-UTF-8 and oversized bodies.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from compute.models import IdempotencyKey, KubernetesCluster, VirtualMachine, Workload
from monitoring import crypto
from tenants.models import Quota

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

PROBLEM = "application/problem+json"
VMS = "/api/v1/tenants/acme/virtualmachines/"
WORKLOADS = "/api/v1/tenants/acme/workloads/"
MARKUP = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "a/b", "wéb", "a b"]


@pytest.fixture
def cluster(db):
    return KubernetesCluster.objects.create(
        name="fake",
        server="https://127.0.0.1:1",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
        default=True,
    )


@pytest.fixture
def world(demo, make_host, tiny_image, cluster):
    make_host("node-a", cpus=64, memory_mib=256 * 1024)
    return demo


def vm_body(name: str = "web1", meta: dict | None = None, **spec) -> dict:
    return {
        "metadata": {"name": name, **(meta or {})},
        "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 256, **spec},
    }


def workload_body(name: str = "web", meta: dict | None = None, **spec) -> dict:
    return {"metadata": {"name": name, **(meta or {})}, "spec": {"image": "nginx:1.27", **spec}}


def problem(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content[:2000]
    assert response["Content-Type"] == PROBLEM
    data = json.loads(response.content)
    assert data["status"] == status and data["title"] and data["detail"]
    return data


def nothing_changed(tenant) -> None:
    assert not VirtualMachine.objects.exists()
    assert not Workload.objects.exists()
    assert not IdempotencyKey.objects.exists()
    quota = Quota.objects.get(tenant=tenant)
    assert (quota.used_vms, quota.used_pods, quota.used_cpu, quota.used_memory) == (0, 0, 0, 0)


# --- Names with markup ---------------------------------------------------------------------
@pytest.mark.parametrize("name", MARKUP)
@pytest.mark.parametrize("key", [None, "retry-1"])
def test_a_workload_name_with_markup_is_a_field_error_not_a_500(world, api, name, key):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = api(world.bob).post(WORKLOADS, workload_body(name), format="json", **headers)
    assert "metadata.name" in problem(response)["errors"]
    nothing_changed(world.acme)


@pytest.mark.parametrize("name", MARKUP)
@pytest.mark.parametrize("key", [None, "retry-1"])
def test_a_vm_name_with_markup_is_a_field_error_not_a_500(world, api, name, key):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = api(world.bob).post(VMS, vm_body(name), format="json", **headers)
    assert "metadata.name" in problem(response)["errors"]
    nothing_changed(world.acme)
