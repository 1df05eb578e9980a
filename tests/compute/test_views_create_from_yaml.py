""" "Create from YAML": a pasted API create body makes the same VM or workload as the API
would, a bad one is refused with the reason next to the text (line and column for bad
YAML, the API's field path otherwise) and creates nothing; "Copy as new" on a YAML page
opens it prefilled with the resource's spec; viewers and outsiders cannot use it."""

from __future__ import annotations

import html
import re

import pytest
import yaml
from django.test import Client
from rest_framework.test import APIClient

from compute.models import VirtualMachine, Workload
from compute.services import vms as vm_services
from tenants import services as tenant_services
from tenants.models import AuditLog, Quota
from tests.compute.test_views_workloads import make
from tests.compute.test_views_workloads import world as workload_world  # noqa: F401

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

VM_YAML = "/t/acme/vms/new/yaml/"
WORKLOAD_YAML = "/t/acme/workloads/new/yaml/"
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-Hans,zh;q=0.9"}

VM_DOC = """\
metadata:
  name: web-1
  labels: {tier: web}
spec:
  image: tiny
  vcpus: 1
  memoryMiB: 256
  desiredState: stopped
"""


@pytest.fixture
def vm_world(demo, make_host, tiny_image):
    make_host("node-a", cpus=64, memory_mib=256 * 1024)
    return demo


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def textarea(response) -> str:
    match = re.search(
        r'data-testid="manifest-input">(.*?)</textarea>', response.content.decode(), re.S
    )
    return html.unescape(match.group(1))


def errors_shown(response) -> list[str]:
    """The refusals shown under the text, one per line."""
    found = re.findall(
        r'<div class="invalid-feedback d-block">(.*?)</div>', response.content.decode(), re.S
    )
    return [html.unescape(re.sub(r"<[^>]+>", "", line)).strip() for line in found]


def quota_used(tenant) -> tuple:
    q = Quota.objects.get(tenant=tenant)
    return (q.used_vms, q.used_cpu, q.used_memory)


def test_a_pasted_vm_is_created_like_the_api_creates_it(vm_world):
    page = client_for(vm_world.bob).get(VM_YAML)
    assert page.status_code == 200
    # The example to start from is a valid body naming one of the tenant's images.
    assert yaml.safe_load(textarea(page))["spec"]["image"] == "tiny"
    response = client_for(vm_world.bob).post(VM_YAML, {"manifest": VM_DOC})
    assert response.status_code == 302, errors_shown(response)
    assert response.url == "/t/acme/vms/web-1/"
    vm = VirtualMachine.objects.get(tenant=vm_world.acme, name="web-1")
    assert (vm.vcpus, vm.memory_mib, vm.labels, vm.desired_state) == (
        1,
        256,
        {"tier": "web"},
        "stopped",
    )
    assert AuditLog.objects.filter(actor=vm_world.bob, action="vm.create").exists()
    # The same body through the API makes the same VM (under another name).
    api = APIClient()
    api.force_authenticate(vm_world.bob)
    body = yaml.safe_load(VM_DOC.replace("web-1", "web-2"))
    assert api.post("/api/v1/tenants/acme/virtualmachines/", body, format="json").status_code == 202
    twin = VirtualMachine.objects.get(tenant=vm_world.acme, name="web-2")
    assert (twin.vcpus, twin.memory_mib, twin.labels, twin.desired_state) == (
        vm.vcpus,
        vm.memory_mib,
        vm.labels,
        vm.desired_state,
    )


def test_json_is_accepted_too(vm_world):
    body = '{"metadata": {"name": "j1"}, "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 256}}'
    response = client_for(vm_world.bob).post(VM_YAML, {"manifest": body})
    assert response.status_code == 302
    assert VirtualMachine.objects.filter(name="j1").exists()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("metadata:\n  name: [web\n", "Line 3, column 1: expected ',' or ']'"),
        ("- a\n- b\n", "The manifest must be a mapping (metadata: …, spec: …), not a list."),
        ("", "Paste a manifest: a YAML or JSON mapping."),
        ("a: &x [1]\nb: *x\n", "Line 2, column 4: anchors and aliases (*name) are not accepted"),
        ('{"metadata": }', "Line 1, column 14: Expecting value"),
        ("x" * (64 * 1024 + 1), "At most 64 KiB; this is 65 KiB."),
    ],
    ids=["yaml-syntax", "list", "empty", "alias", "json-syntax", "too-big"],
)
def test_text_that_is_no_mapping_is_refused_with_where_and_why(vm_world, text, shown):
    response = client_for(vm_world.bob).post(VM_YAML, {"manifest": text})
    assert response.status_code == 400
    assert "The manifest is not valid." in response.content.decode()
    assert any(line.startswith(shown) for line in errors_shown(response)), errors_shown(response)
    assert textarea(response) == text  # kept as typed, to fix
    assert not VirtualMachine.objects.exists()


def test_unknown_missing_and_wrong_fields_are_named_by_their_api_path(vm_world):
    text = VM_DOC.replace("vcpus: 1", "vcpus: many\n  colour: blue") + "status:\n  phase: Running\n"
    response = client_for(vm_world.bob).post(VM_YAML, {"manifest": text})
    assert response.status_code == 400
    shown = errors_shown(response)
    assert "spec.colour: Unknown field." in shown
    assert "status: Unknown field." in shown
    assert "spec.vcpus: A valid integer is required." in shown
    response = client_for(vm_world.bob).post(VM_YAML, {"manifest": "metadata: {name: x}\n"})
    assert "spec: This field is required." in errors_shown(response)
    assert not VirtualMachine.objects.exists()


def test_service_refusals_and_quota_are_shown_and_nothing_is_created(vm_world):
    before = quota_used(vm_world.acme)
    bad_name = VM_DOC.replace("web-1", "Web_1")
    shown = errors_shown(client_for(vm_world.bob).post(VM_YAML, {"manifest": bad_name}))
    assert any(line.startswith("metadata.name: ") for line in shown), shown
    tenant_services.quota_set(actor=None, tenant=vm_world.acme, limits={"cpu": 2})
    response = client_for(vm_world.bob).post(
        VM_YAML, {"manifest": VM_DOC.replace("vcpus: 1", "vcpus: 4")}
    )
    assert response.status_code == 400
    assert any(
        line.startswith("spec.vcpus: Quota exceeded for cpu") for line in errors_shown(response)
    )
    assert not VirtualMachine.objects.exists()
    assert quota_used(vm_world.acme) == before


def test_the_page_and_its_refusals_speak_chinese(vm_world):
    client = client_for(vm_world.bob)
    page = client.get(VM_YAML, **ZH).content.decode()
    assert "从 YAML 创建" in page
    response = client.post(VM_YAML, {"manifest": "- a\n"}, **ZH)
    assert "清单无效。" in response.content.decode()
    response = client.post(VM_YAML, {"manifest": VM_DOC + "status: {}\n"}, **ZH)
    assert "status: 未知字段。" in errors_shown(response)


def test_copy_as_new_prefills_the_vms_spec_under_a_new_name(vm_world):
    vm_services.vm_create(
        actor=None,
        tenant=vm_world.acme,
        name="src",
        image="tiny",
        vcpus=2,
        memory_mib=384,
        labels={"tier": "db"},
    )
    client = client_for(vm_world.bob)
    manifest = client.get("/t/acme/vms/src/manifest/").content.decode()
    link = html.unescape(
        re.search(r'href="([^"]+)" data-testid="manifest-copy"', manifest).group(1)
    )
    assert link == "/t/acme/vms/new/yaml/?from=src&format=yaml"
    document = yaml.safe_load(textarea(client.get(link)))
    assert document["metadata"] == {"name": "src-copy", "labels": {"tier": "db"}}
    assert document["spec"]["vcpus"] == 2
    assert document["spec"]["memoryMiB"] == 384
    # As it comes, it creates the copy.
    response = client.post(VM_YAML, {"manifest": textarea(client.get(link))})
    assert response.url == "/t/acme/vms/src-copy/"
    # A viewer sees the YAML page without the button; another tenant's VM is a 404.
    viewer = client_for(vm_world.carol).get("/t/acme/vms/src/manifest/").content.decode()
    assert "manifest-copy" not in viewer
    assert client.get(VM_YAML + "?from=nope").status_code == 404


def test_viewers_get_403_and_outsiders_404(vm_world):
    assert client_for(vm_world.carol).get(VM_YAML).status_code == 403
    assert client_for(vm_world.carol).post(VM_YAML, {"manifest": VM_DOC}).status_code == 403
    assert client_for(vm_world.dave).get(VM_YAML).status_code == 404
    assert client_for(vm_world.dave).post(VM_YAML, {"manifest": VM_DOC}).status_code == 404
    assert not VirtualMachine.objects.exists()


WORKLOAD_DOC = """\
metadata:
  name: shop
spec:
  image: nginx:1.27
  replicas: 2
  ports: [80]
  resources:
    requests: {cpu: 250m, memory: 64Mi}
"""


def test_a_pasted_workload_is_created_and_refusals_name_their_path(workload_world):  # noqa: F811
    client = client_for(workload_world.bob)
    assert client.get(WORKLOAD_YAML).status_code == 200
    bad = WORKLOAD_DOC.replace("250m", "lots")
    response = client.post(WORKLOAD_YAML, {"manifest": bad})
    assert response.status_code == 400
    shown = errors_shown(response)
    assert any(line.startswith("spec.resources.requests.cpu: ") for line in shown), shown
    assert not Workload.objects.exists()
    response = client.post(WORKLOAD_YAML, {"manifest": WORKLOAD_DOC})
    assert response.url == "/t/acme/workloads/shop/"
    shop = Workload.objects.get(name="shop")
    assert (shop.replicas, shop.cpu_request_m, shop.ports) == (2, 250, [80])
    assert client_for(workload_world.carol).get(WORKLOAD_YAML).status_code == 403


def test_copy_as_new_of_a_workload_round_trips(workload_world):  # noqa: F811
    make(workload_world, "api", replicas=2, cpu_request="200m", env={"MODE": "prod"})
    client = client_for(workload_world.bob)
    link = "/t/acme/workloads/new/yaml/?from=api&format=json"
    assert (
        link.replace("&", "&amp;")
        in client.get("/t/acme/workloads/api/manifest/?format=json").content.decode()
    )
    text = textarea(client.get(link))
    assert text.lstrip().startswith("{")
    response = client.post(WORKLOAD_YAML, {"manifest": text})
    assert response.status_code == 302, errors_shown(response)
    copy = Workload.objects.get(name="api-copy")
    assert (copy.replicas, copy.cpu_request_m, copy.env) == (2, 200, {"MODE": "prod"})
