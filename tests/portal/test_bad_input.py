"""Bad input is a clear 4xx problem (or a form error) and changes nothing; never a 500.

One focused regression test per input that used to crash or slip through: markup in
names, names and env names with a trailing newline, label and nodeSelector maps without
limits, garbage headers, wrong JSON types, non-UTF-8 and oversized bodies.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.test import Client
from rest_framework.test import APIClient

from compute.models import IdempotencyKey, KubernetesCluster, VirtualMachine, Workload
from compute.services import vms as vm_services
from compute.services.clusters import kubeconfig_inline
from monitoring import crypto, groups
from monitoring.models import Webhook
from monitoring.services import event_publish
from portal.exceptions import ValidationError
from tenants import services as tenant_services
from tenants.models import DNS_LABEL, ApiToken, Membership, Quota, Tenant

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


# --- NUL characters: PostgreSQL text cannot hold them ---------------------------------------
@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("get", "/api/v1/tenants/acme/members/a%00b/", {}),
        ("patch", "/api/v1/tenants/acme/members/a%00b/", {}),
        ("get", "/api/v1/tenants/acme/migrations/?vm=a%00b", {}),
        ("get", "/api/v1/tenants/a%00/quota/", {}),
        ("get", "/api/v1/tenants/", {"HTTP_AUTHORIZATION": "Token iso_ab\x00c_secret"}),
        ("delete", "/api/v1/tenants/acme/virtualmachines/web1/", {"HTTP_IF_MATCH": '"1\x00"'}),
    ],
)
def test_a_nul_in_the_path_query_or_a_header_is_a_400_problem(world, method, url, headers):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(world.alice)
    body = '{"spec": {"role": "viewer"}}' if method == "patch" else ""
    response = client.generic(method.upper(), url, body, "application/json", **headers)
    assert "NUL" in problem(response)["detail"]
    assert Membership.objects.filter(tenant=world.acme).count() == 3


@pytest.mark.parametrize(
    "url", ["/t/acme/members/a%00b/", "/profile/tokens/a%00b/revoke/", "/t/acme/vms/?phase=%00"]
)
def test_a_nul_in_a_page_url_is_a_400(world, url):
    client = Client(raise_request_exception=False)
    client.force_login(world.alice)
    response = client.post(url, {"role": "viewer"})
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_the_member_service_takes_a_name_with_a_nul_for_an_unknown_user(world):
    with pytest.raises(ValidationError) as caught:
        tenant_services.membership_add(actor=world.alice, tenant=world.acme, user="bo\x00b")
    assert caught.value.errors == {"user": ["Unknown user."]}
    assert Membership.objects.filter(tenant=world.acme).count() == 3


@pytest.mark.parametrize(
    ("url", "form"),
    [
        ("/t/acme/members/add/", {"username": "bo\x00b", "role": "viewer"}),
        ("/profile/", {"name": "ci\x00", "expires_days": ""}),
        ("/t/acme/webhooks/add/", {"url": "https://example.com/h", "description": "a\x00"}),
    ],
)
def test_a_nul_in_a_form_field_is_a_400_and_changes_nothing(world, url, form):
    response = _page_client(world.alice).post(url, form)
    assert response.status_code == 400 and b"NUL" in response.content
    assert Membership.objects.filter(tenant=world.acme).count() == 3
    assert not ApiToken.objects.exists() and not Webhook.objects.exists()


# --- Bodies ---------------------------------------------------------------------------------
def test_a_deeply_nested_json_body_is_a_400_problem(world, api):
    deep = "[" * 100_000 + "]" * 100_000
    response = api(world.bob).generic("POST", WORKLOADS, deep, content_type="application/json")
    assert "nested too deeply" in problem(response)["detail"]
    nothing_changed(world.acme)


def test_a_body_over_the_upload_limit_is_a_413_problem(world, api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = workload_body(args=["x" * 1000] * 20)
    response = api(world.bob).post(WORKLOADS, body, format="json")
    assert problem(response, 413)["title"] == "Request body too large"
    nothing_changed(world.acme)


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (b'{"metadata": {"name": "w\xe9b"}}', "application/json", "JSON parse error"),
        (b"[1, 2]", "application/json", "The request has invalid fields."),
        (b'"web"', "application/json", "The request has invalid fields."),
        (b"null", "application/json", "The request has invalid fields."),
        (b"name=web&image=nginx", "application/x-www-form-urlencoded", "Unsupported media"),
        (b"metadata:\n  name: web\n", "application/yaml", "Unsupported media"),
    ],
)
def test_bodies_of_the_wrong_type_or_encoding_are_clear_4xx_problems(
    world, api, body, content_type, detail
):
    response = api(world.bob).generic("POST", WORKLOADS, body, content_type=content_type)
    assert response.status_code in (400, 415)
    assert detail in problem(response, response.status_code)["detail"]
    nothing_changed(world.acme)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999999", "offset"),
        ("phase=", "phase"),
        ("phase=Sleeping", "phase"),
    ],
)
def test_bad_list_parameters_are_a_400_naming_the_parameter(world, api, query, field):
    response = api(world.bob).get(f"{VMS}?{query}")
    assert list(problem(response)["errors"]) == [field]


def test_a_malformed_token_id_is_a_401_without_a_lookup(world, django_assert_num_queries):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token iso_" + "z" * 5000 + "_secret")
    with django_assert_num_queries(0):
        response = client.get("/api/v1/tenants/")
    assert problem(response, 401)["detail"] == "Malformed token."


def test_unknown_fields_in_a_member_body_are_refused(world, api):
    response = api(world.alice).post(
        "/api/v1/tenants/acme/members/",
        {"metadata": {"name": "erin", "admin": True}, "spec": {"role": "viewer"}},
        format="json",
    )
    assert problem(response)["errors"] == {"metadata.admin": ["Unknown field."]}
    assert not Membership.objects.filter(user=world.outsider).exists()


# --- YAML (the kubeconfig a platform admin pastes) ----------------------------------------
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        ("clusters: [\n", "not YAML"),
        ("- just\n- a list\n", "no clusters section"),
        ("clusters: 5\n", "'clusters' must be a list"),
        ("clusters: [1, 2]\n", "needs a name and a 'cluster' mapping"),
        ("clusters: [{name: c, cluster: {certificate-authority: 7}}]\n", "names a file"),
        ("clusters: [{name: c, cluster: {}}]\nusers: {a: b}\n", "'users' must be a list"),
        (BILLION_LAUGHS + "clusters: [{name: c, cluster: {}}]\n", "aliases"),
        ("[" * 5000 + "]" * 5000, "not YAML"),
        ("a:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(100)), "too deeply"),
        ("clusters: []\n" + "#" * 300_000, "KiB"),
    ],
)
def test_a_malformed_kubeconfig_is_a_form_error_and_adds_no_cluster(db, kubeconfig, message):
    admin = Client(raise_request_exception=False)
    admin.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    response = admin.post(
        "/admin/compute/kubernetescluster/add/",
        {"name": "bad", "enabled": "on", "kubeconfig": kubeconfig},
    )
    assert response.status_code == 200, response.content[:500]
    errors = " ".join(response.context["adminform"].form.errors["kubeconfig"])
    assert message in errors
    assert not KubernetesCluster.objects.exists()


def test_a_kubeconfig_with_a_null_context_still_finds_its_server(db):
    text, server = kubeconfig_inline(
        "clusters: [{name: c, cluster: {server: 'https://k8s.example:6443'}}]\n"
        "contexts: [{name: ctx, context: null}]\ncurrent-context: ctx\n"
    )
    assert server == "https://k8s.example:6443"


# --- Quota amounts: exactly what the schema documents ---------------------------------------
@pytest.mark.parametrize("cpu", ["1e3", " 2", "+2", "2.", True, "0x10"])
def test_a_quota_cpu_outside_the_documented_forms_is_a_field_error(world, api, cpu):
    before = Quota.objects.get(tenant=world.acme).cpu
    response = api(world.admin).patch(
        "/api/v1/tenants/acme/quota/", {"spec": {"hard": {"cpu": cpu}}}, format="json"
    )
    assert list(problem(response)["errors"]) == ["spec.hard.cpu"]
    assert Quota.objects.get(tenant=world.acme).cpu == before


@pytest.mark.parametrize(("cpu", "cores"), [(2.5, "2.500"), ("2.5", "2.500"), (3, "3.000")])
def test_a_quota_cpu_may_be_a_number_or_a_decimal_string(world, api, cpu, cores):
    response = api(world.admin).patch(
        "/api/v1/tenants/acme/quota/", {"spec": {"hard": {"cpu": cpu}}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert str(Quota.objects.get(tenant=world.acme).cpu) == cores


# --- The same names through the web forms -------------------------------------------------
def _page_client(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize("name", MARKUP)
@pytest.mark.parametrize(
    ("url", "form"),
    [
        (
            "/t/acme/vms/new/",
            lambda tiny, name: {
                "name": name,
                "image": str(tiny.pk),
                "size": "custom",
                "vcpus": "1",
                "memory_mib": "256",
                "disk_gib": "0",
                "restart_policy": "OnFailure",
            },
        ),
        (
            "/t/acme/workloads/new/",
            lambda tiny, name: {
                "name": name,
                "kind": "Deployment",
                "image": "nginx:1.27",
                "replicas": "1",
                "cpu_request": "100m",
                "memory_request": "128Mi",
                "env": f"{name}=x",
            },
        ),
    ],
)
def test_a_create_form_shows_markup_in_a_name_as_an_escaped_field_error(
    world, tiny_image, name, url, form
):
    response = _page_client(world.bob).post(url, form(tiny_image, name))
    assert response.status_code == 400
    assert response.context["form"].errors["name"]
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    nothing_changed(world.acme)


@pytest.mark.parametrize("name", MARKUP)
def test_adding_a_member_named_with_markup_says_unknown_user_escaped(world, name):
    client = _page_client(world.alice)
    response = client.post(
        "/t/acme/members/add/", {"username": name, "role": "viewer"}, follow=True
    )
    html = response.content.decode()
    assert response.status_code == 200 and "No user named" in html
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert Membership.objects.filter(tenant=world.acme).count() == 3


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+ssh://node2/system?sshauth=agent%0A",
        "qemu+tls://node2/system?name=qemu%3A%2F%2F%0A",
    ],
)
def test_a_host_uri_parameter_ending_in_a_newline_is_refused(uri):
    from compute.services.hosts import host_uri_check

    with pytest.raises(ValidationError) as caught:
        host_uri_check(uri)
    assert "is not allowed" in caught.value.errors["uri"][0]


# --- Garbage in the concurrency headers -----------------------------------------------------
@pytest.mark.parametrize("if_match", ['"abc"', "W/", '"8", "9", ' * 500, "\u00e9\u00e9", '""'])
def test_an_if_match_that_names_no_version_is_a_412_and_changes_nothing(world, api, if_match):
    vm = vm_services.vm_create(
        actor=world.bob, tenant=world.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    response = api(world.bob).delete(f"{VMS}web1/", HTTP_IF_MATCH=if_match)
    assert problem(response, 412)["title"] == "Precondition failed"
    vm.refresh_from_db()
    assert vm.desired_state != "deleted" and vm.phase == "Pending"


@pytest.mark.parametrize("key", ["", " ", "k\u00e9y", "k\tey", "k" * 256])
def test_a_garbage_idempotency_key_is_a_400_and_creates_nothing(world, api, key):
    response = api(world.bob).post(
        WORKLOADS, workload_body(), format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert list(problem(response)["errors"]) == ["Idempotency-Key"]
    nothing_changed(world.acme)
