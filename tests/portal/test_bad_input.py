"""Bad input is a clear 4xx problem (or a form error) and changes nothing; never a 500.

One focused regression test per input that used to crash or slip through: markup in
names, names and env names with a trailing newline, label and nodeSelector maps without
limits, garbage headers, wrong JSON types, non-UTF-8 and oversized bodies.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError

from compute.models import IdempotencyKey, KubernetesCluster, VirtualMachine, Workload
from compute.services import vms as vm_services
from monitoring import crypto, groups
from monitoring.services import event_publish
from portal.exceptions import ValidationError
from tenants.models import DNS_LABEL, Quota, Tenant

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

PROBLEM = "application/problem+json"
VMS = "/api/v1/tenants/acme/virtualmachines/"
WORKLOADS = "/api/v1/tenants/acme/workloads/"
MARKUP = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "a/b", "wéb", "a b"]


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


# --- A trailing newline is not the end of a name ------------------------------------------
def test_an_env_name_with_a_trailing_newline_is_a_field_error(world, api):
    response = api(world.bob).post(WORKLOADS, workload_body(env={"MODE\n": "prod"}), format="json")
    assert "MODE" in problem(response)["errors"]["spec.env"][0]
    nothing_changed(world.acme)


def test_a_vm_name_with_a_trailing_newline_is_refused_by_the_service(world):
    with pytest.raises(ValidationError) as caught:
        vm_services.vm_create(
            actor=world.bob, tenant=world.acme, name="web1\n", image="tiny", vcpus=1, memory_mib=256
        )
    assert list(caught.value.errors) == ["name"]
    nothing_changed(world.acme)


def test_a_tenant_slug_with_a_trailing_newline_fails_the_model_validator(db):
    with pytest.raises(DjangoValidationError):
        DNS_LABEL("acme\n")
    with pytest.raises(DjangoValidationError):
        Tenant(slug="acme\n", name="x").full_clean()


def test_an_object_name_with_a_newline_gets_a_valid_channels_group():
    group = groups.object_group("acme", "vm", "web1\n")
    assert "\n" not in group and group.startswith("object.acme.vm.h-")


def test_an_event_reason_with_a_trailing_newline_is_refused(world):
    with pytest.raises(ValidationError) as caught:
        event_publish(tenant=world.acme, kind="vm", name="web1", reason="Started\n", message="m")
    assert "reason" in caught.value.errors


# --- Label and nodeSelector maps: Kubernetes syntax and limits ------------------------------
BAD_LABELS = [
    ({f"k{i}": "v" for i in range(65)}, "At most 64"),
    ({"a" * 64: "v"}, "Invalid key"),
    ({"team\n": "v"}, "Invalid key"),
    ({"-team": "v"}, "Invalid key"),
    ({"a b": "v"}, "Invalid key"),
    ({"<script>": "v"}, "Invalid key"),
    ({"Example.com/team": "v"}, "prefix"),
    ({"/team": "v"}, "prefix"),
    ({"x" * 254 + "/team": "v"}, "prefix"),
    ({"team": "v" * 64}, "Invalid value"),
    ({"team": "red blue"}, "Invalid value"),
    ({"team": "-red"}, "Invalid value"),
    ({"team": '"><img>'}, "Invalid value"),
]
GOOD_LABELS = {"team": "red", "example.com/tier": "web-1", "empty": "", "a.b_c-d": "Z9"}


@pytest.mark.parametrize(("labels", "message"), BAD_LABELS)
@pytest.mark.parametrize(
    ("url", "make", "where", "field"),
    [
        (VMS, lambda m: vm_body(meta={"labels": m}), "metadata", "metadata.labels"),
        (VMS, lambda m: vm_body(nodeSelector=m), "spec", "spec.nodeSelector"),
        (WORKLOADS, lambda m: workload_body(meta={"labels": m}), "metadata", "metadata.labels"),
    ],
)
def test_bad_labels_and_node_selectors_are_field_errors(
    world, api, labels, message, url, make, where, field
):
    response = api(world.bob).post(url, make(labels), format="json")
    errors = problem(response)["errors"]
    assert message in errors[field][0], errors
    nothing_changed(world.acme)


def test_labels_in_kubernetes_syntax_are_kept(world, api):
    client = api(world.bob)
    vm = client.post(VMS, vm_body(meta={"labels": GOOD_LABELS}, nodeSelector={}), format="json")
    workload = client.post(WORKLOADS, workload_body(meta={"labels": GOOD_LABELS}), format="json")
    assert vm.status_code == workload.status_code == 202, (vm.content, workload.content)
    assert vm.json()["metadata"]["labels"] == GOOD_LABELS
    assert workload.json()["metadata"]["labels"] == GOOD_LABELS
