"""REST API conventions from the SPEC: problem+json errors, token auth, pagination,
resource shape, optimistic concurrency, OpenAPI, and the quota as the API shows it."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from portal.exceptions import QuotaExceeded
from tenants import services
from tenants.choices import AuditOutcome, Role
from tenants.models import ApiToken, AuditLog, Membership, Quota

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

PROBLEM = "application/problem+json"
QUOTA = "/api/v1/tenants/acme/quota/"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = json.loads(response.content)
    assert body["type"] == f"https://isotope.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def quota_row(tenant) -> dict:
    return Quota.objects.filter(tenant=tenant).values().get()


def with_token(key: str, **kwargs) -> APIClient:
    client = APIClient(**kwargs)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


# --- problem+json ---------------------------------------------------------------------------
def test_an_unknown_tenant_is_a_problem_json_404(demo, api):
    body = assert_problem(api(demo.alice).get("/api/v1/tenants/nope/"), 404, "not-found")
    assert body["title"] == "Not found"
    assert "nope" in body["detail"]
    assert "errors" not in body


def test_an_unknown_member_is_a_problem_json_404(demo, api):
    response = api(demo.alice).get("/api/v1/tenants/acme/members/dave/")
    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize(
    ("hard", "field"),
    [
        ({"vms": -1}, "spec.hard.vms"),
        ({"cpu": "-0.5"}, "spec.hard.cpu"),
        ({"memory": "lots"}, "spec.hard.memory"),
        ({"gpus": 4}, "spec.hard.gpus"),
        ({"cpu": "1.0005"}, "spec.hard.cpu"),
    ],
)
def test_a_bad_quota_patch_is_a_400_naming_the_field_and_changes_nothing(demo, api, hard, field):
    before = quota_row(demo.acme)
    response = api(demo.admin).patch(QUOTA, {"spec": {"hard": hard}}, format="json")
    body = assert_problem(response, 400, "invalid")
    assert body["title"] == "Invalid input"
    assert list(body["errors"]) == [field]
    assert all(isinstance(message, str) for message in body["errors"][field])
    assert quota_row(demo.acme) == before
    assert not AuditLog.objects.filter(action="quota.set").exists()


def test_a_quota_patch_without_a_spec_is_a_400_naming_the_missing_and_the_unknown_field(demo, api):
    response = api(demo.admin).patch(QUOTA, {"hard": {"vms": 3}}, format="json")
    assert assert_problem(response, 400, "invalid")["errors"] == {
        "spec": ["This field is required."],
        "hard": ["Unknown field."],
    }


def test_adding_an_unknown_user_is_a_400_with_the_service_field_error(demo, api):
    response = api(demo.alice).post(
        "/api/v1/tenants/acme/members/",
        {"metadata": {"name": "nobody"}, "spec": {"role": "viewer"}},
        format="json",
    )
    assert assert_problem(response, 400, "invalid")["errors"] == {"user": ["Unknown user."]}


def test_adding_a_member_twice_is_a_409_problem(demo, api):
    response = api(demo.alice).post(
        "/api/v1/tenants/acme/members/",
        {"metadata": {"name": "carol"}, "spec": {"role": "admin"}},
        format="json",
    )
    body = assert_problem(response, 409, "conflict")
    assert body["errors"] == {"user": ["Already a member."]}
    assert Membership.objects.get(tenant=demo.acme, user=demo.carol).role == Role.VIEWER


def test_demoting_the_last_admin_through_the_api_is_a_409_problem(demo, api):
    response = api(demo.alice).patch(
        "/api/v1/tenants/acme/members/alice/", {"spec": {"role": "viewer"}}, format="json"
    )
    assert assert_problem(response, 409, "conflict")["errors"] == {"role": ["Last admin."]}
    assert Membership.objects.get(tenant=demo.acme, user=demo.alice).role == Role.ADMIN


def test_an_unsupported_method_is_a_405_problem(demo, api):
    assert_problem(api(demo.admin).delete(QUOTA), 405, "method-not-allowed")


def test_a_forbidden_write_is_a_403_problem(demo, api):
    response = api(demo.carol).delete("/api/v1/tenants/acme/members/bob/")
    assert "viewer" in assert_problem(response, 403, "forbidden")["detail"]


def test_no_credentials_is_a_401_problem_that_names_the_token_scheme(demo):
    response = APIClient().get("/api/v1/tenants/")
    assert_problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == "Token"


# --- Token authentication ---------------------------------------------------------------
def test_a_token_authenticates_a_plain_client(demo):
    token, key = services.token_create(user=demo.alice, name="ci")
    response = with_token(key).get("/api/v1/tenants/")
    assert response.status_code == 200
    assert [t["metadata"]["name"] for t in response.json()["items"]] == ["acme"]
    token.refresh_from_db()
    assert token.last_used is not None


def test_only_the_sha256_of_a_token_is_stored(demo):
    token, key = services.token_create(user=demo.alice, name="ci")
    secret = key.split("_", 2)[2]
    assert key.startswith(f"iso_{token.key_id}_")
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = json.dumps(
        [
            list(ApiToken.objects.values_list()),
            list(AuditLog.objects.values_list("detail", "target")),
        ],
        default=str,
    )
    assert secret not in stored
    assert key not in stored


def test_token_requests_get_the_same_rbac_and_audit_as_the_browser(demo):
    _, carol_key = services.token_create(user=demo.carol, name="ci")
    _, alice_key = services.token_create(user=demo.alice, name="ci")
    add = {"metadata": {"name": "erin"}, "spec": {"role": "viewer"}}

    refused = with_token(carol_key).post("/api/v1/tenants/acme/members/", add, format="json")
    assert_problem(refused, 403, "forbidden")
    assert with_token(carol_key).get("/api/v1/tenants/globex/").status_code == 404

    # A token needs no CSRF token, even on a client that enforces CSRF checks.
    client = with_token(alice_key, enforce_csrf_checks=True)
    assert client.post("/api/v1/tenants/acme/members/", add, format="json").status_code == 201
    row = AuditLog.objects.get(action="member.add", target="erin")
    assert (row.actor, row.tenant, row.outcome) == (demo.alice, demo.acme, AuditOutcome.SUCCESS)
    assert row.source_ip == "127.0.0.1"


def test_a_session_write_without_a_csrf_token_is_refused(demo):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(demo.alice)
    response = client.post(
        "/api/v1/tenants/acme/members/",
        {"metadata": {"name": "erin"}, "spec": {"role": "viewer"}},
        format="json",
    )
    assert "CSRF" in assert_problem(response, 403, "forbidden")["detail"]
    assert not Membership.objects.filter(user=demo.outsider).exists()


def test_a_revoked_token_is_a_401(demo):
    token, key = services.token_create(user=demo.alice, name="ci")
    assert with_token(key).get("/api/v1/tenants/").status_code == 200
    services.token_revoke(user=demo.alice, key_id=token.key_id)
    assert_problem(with_token(key).get("/api/v1/tenants/"), 401, "unauthenticated")


def test_an_expired_token_is_a_401(demo):
    token, key = services.token_create(
        user=demo.alice, name="ci", expires=timezone.now() + timedelta(days=1)
    )
    assert with_token(key).get("/api/v1/tenants/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    assert_problem(with_token(key).get("/api/v1/tenants/"), 401, "unauthenticated")


def test_the_token_of_a_deactivated_user_is_a_401(demo):
    _, key = services.token_create(user=demo.alice, name="ci")
    demo.alice.is_active = False
    demo.alice.save()
    assert_problem(with_token(key).get("/api/v1/tenants/"), 401, "unauthenticated")


@pytest.mark.parametrize(
    "header",
    [
        "Token",
        "Token a b",
        "Token not-a-key",
        "Token iso__secret",
        "Token iso_0123456789ab_",
        "Token xyz_0123456789ab_secret",
        "Token {key_id_with_wrong_secret}",
        "Token {key}extra",
    ],
)
def test_a_malformed_or_wrong_token_is_a_401(demo, header):
    token, key = services.token_create(user=demo.alice, name="ci")
    header = header.format(key_id_with_wrong_secret=f"iso_{token.key_id}_wrong", key=key)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_problem(client.get("/api/v1/tenants/"), 401, "unauthenticated")


# --- Lists, resource shape, ETag ------------------------------------------------------------
def test_lists_are_paginated_with_limit_and_offset(demo, api):
    client = api(demo.alice)
    first = client.get("/api/v1/tenants/acme/members/?limit=2").json()
    assert set(first) == {"count", "next", "previous", "items"}
    assert first["count"] == 3
    assert [m["metadata"]["name"] for m in first["items"]] == ["alice", "bob"]
    assert first["previous"] is None
    assert first["next"].endswith("/api/v1/tenants/acme/members/?limit=2&offset=2")

    second = client.get(first["next"]).json()
    assert [m["metadata"]["name"] for m in second["items"]] == ["carol"]
    assert second["next"] is None
    assert second["previous"].endswith("/api/v1/tenants/acme/members/?limit=2")

    tenants = api(demo.admin).get("/api/v1/tenants/?limit=1&offset=1").json()
    assert tenants["count"] == 2
    assert [t["metadata"]["name"] for t in tenants["items"]] == ["globex"]


def test_a_tenant_has_the_metadata_spec_status_shape_and_an_etag(demo, api):
    response = api(demo.bob).get("/api/v1/tenants/acme/")
    body = response.json()
    assert set(body) == {"metadata", "spec", "status"}
    meta = body["metadata"]
    assert set(meta) >= {"name", "uid", "created", "resourceVersion", "labels"}
    assert meta["name"] == "acme"
    assert meta["uid"] == str(demo.acme.uid)
    assert meta["resourceVersion"] == str(demo.acme.resource_version)
    assert meta["created"].endswith("Z")
    assert body["spec"] == {"displayName": "ACME Corporation", "description": ""}
    assert body["status"] == {"role": "operator", "namespace": "isotope-acme"}
    assert response["ETag"] == f'"{meta["resourceVersion"]}"'


def test_the_quota_has_the_resource_shape_with_hard_used_and_left(demo, api):
    response = api(demo.carol).get(QUOTA)
    body = response.json()
    assert set(body) == {"metadata", "spec", "status"}
    assert body["metadata"]["name"] == "quota"
    assert body["metadata"]["tenant"] == "acme"
    assert response["ETag"] == f'"{body["metadata"]["resourceVersion"]}"'
    assert body["spec"]["hard"] == {
        "cpu": 16,
        "memory": 32768,
        "storage": 200,
        "vms": 20,
        "pods": 50,
        "networks": 10,
    }
    assert body["status"]["used"] == {
        "cpu": 0,
        "memory": 0,
        "storage": 0,
        "vms": 0,
        "pods": 0,
        "networks": 0,
    }
    assert body["status"]["left"] == body["spec"]["hard"]
    assert body["status"]["units"]["memory"] == "MiB"


def test_a_member_has_the_metadata_spec_status_shape(demo, api):
    body = api(demo.carol).get("/api/v1/tenants/acme/members/bob/").json()
    assert body["metadata"]["name"] == "bob"
    assert body["metadata"]["tenant"] == "acme"
    assert body["spec"] == {"role": "operator"}
    assert body["status"] == {"fullName": "Bob", "email": "bob@example.com"}


# --- If-Match -------------------------------------------------------------------------------
def test_a_quota_patch_with_the_current_version_succeeds_and_a_stale_one_is_412(demo, api):
    client = api(demo.admin)
    etag = client.get(QUOTA)["ETag"]

    ok = client.patch(QUOTA, {"spec": {"hard": {"vms": 5}}}, format="json", HTTP_IF_MATCH=etag)
    assert ok.status_code == 200
    assert ok.json()["spec"]["hard"]["vms"] == 5
    assert ok["ETag"] != etag
    assert ok["ETag"] == f'"{ok.json()["metadata"]["resourceVersion"]}"'
    after_first = quota_row(demo.acme)
    audits = AuditLog.objects.filter(action="quota.set").count()

    stale = client.patch(QUOTA, {"spec": {"hard": {"vms": 9}}}, format="json", HTTP_IF_MATCH=etag)
    body = assert_problem(stale, 412, "precondition-failed")
    assert "resourceVersion" in body["detail"]
    assert quota_row(demo.acme) == after_first
    assert AuditLog.objects.filter(action="quota.set").count() == audits


def test_if_match_star_or_a_weak_etag_of_the_current_version_is_accepted(demo, api):
    client = api(demo.admin)
    version = client.get(QUOTA).json()["metadata"]["resourceVersion"]
    star = client.patch(QUOTA, {"spec": {"hard": {"vms": 4}}}, format="json", HTTP_IF_MATCH="*")
    assert star.status_code == 200
    current = star.json()["metadata"]["resourceVersion"]
    assert int(current) == int(version) + 1
    weak = client.patch(
        QUOTA, {"spec": {"hard": {"vms": 3}}}, format="json", HTTP_IF_MATCH=f'W/"{current}"'
    )
    assert weak.status_code == 200
    assert Quota.objects.get(tenant=demo.acme).vms == 3


# --- OpenAPI ----------------------------------------------------------------------------------
def test_the_openapi_schema_lists_the_tenant_endpoints_and_token_auth(demo):
    response = APIClient().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in [
        "/api/v1/tenants/",
        "/api/v1/tenants/{tenant}/",
        "/api/v1/tenants/{tenant}/quota/",
        "/api/v1/tenants/{tenant}/members/",
        "/api/v1/tenants/{tenant}/members/{username}/",
    ]:
        assert path in paths, path
    assert set(paths["/api/v1/tenants/{tenant}/quota/"]) >= {"get", "patch"}
    assert set(paths["/api/v1/tenants/{tenant}/members/{username}/"]) >= {"get", "patch", "delete"}
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_the_interactive_docs_load_for_a_signed_in_user(demo):
    client = Client()
    client.force_login(demo.carol)
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    # Swagger UI's start-up script is a file of its own (the policy runs no inline
    # script): it loads the schema.
    script = client.get("/api/v1/docs/", {"script": ""})
    assert script.status_code == 200 and b"/api/v1/schema/" in script.content


# --- Quota through the API ------------------------------------------------------------------
def test_the_quota_shows_what_is_used_and_left_after_a_reservation(demo, api):
    with transaction.atomic():
        services.quota_reserve(tenant=demo.acme, ref="vm:web-1", cpu="2.5", memory=2048, vms=1)
    status = api(demo.carol).get(QUOTA).json()["status"]
    assert status["used"] == {
        "cpu": 2.5,
        "memory": 2048,
        "storage": 0,
        "vms": 1,
        "pods": 0,
        "networks": 0,
    }
    assert status["left"] == {
        "cpu": 13.5,
        "memory": 30720,
        "storage": 200,
        "vms": 19,
        "pods": 50,
        "networks": 10,
    }


def test_lowering_a_quota_below_use_warns_and_then_refuses_new_reservations(demo, api):
    with transaction.atomic():
        services.quota_reserve(tenant=demo.acme, ref="vm:a", cpu=4, vms=3)

    response = api(demo.admin).patch(QUOTA, {"spec": {"hard": {"vms": 2}}}, format="json")
    assert response.status_code == 200
    status = response.json()["status"]
    assert status["warnings"] == [
        "vms: limit is below current use; new reservations will be refused"
    ]
    assert (status["used"]["vms"], status["hard"]["vms"], status["left"]["vms"]) == (3, 2, 0)
    row = AuditLog.objects.get(action="quota.set")
    assert (row.actor, row.tenant, row.source_ip) == (demo.admin, demo.acme, "127.0.0.1")
    assert row.detail["below_use"] == ["vms"]

    with pytest.raises(QuotaExceeded) as raised, transaction.atomic():
        services.quota_reserve(tenant=demo.acme, ref="vm:b", cpu=1, vms=1)
    assert (raised.value.resource, raised.value.left, raised.value.limit) == ("vms", 0, 2)
    # Resources that still fit are not blocked by the one that is over.
    with transaction.atomic():
        services.quota_reserve(tenant=demo.acme, ref="pod:c", cpu=1, pods=1)
    assert api(demo.carol).get(QUOTA).json()["status"]["used"]["vms"] == 3


def test_a_quota_patch_that_stays_above_use_has_no_warnings(demo, api):
    response = api(demo.admin).patch(QUOTA, {"spec": {"hard": {"vms": 2}}}, format="json")
    assert response.status_code == 200
    assert "warnings" not in response.json()["status"]
