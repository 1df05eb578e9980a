"""The OpenAPI schema describes what the API really answers (the fuzz test holds every
answer to it; these pin the rules it relies on, one per mistake the fuzzer found)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

PROBLEM = "application/problem+json"


@pytest.fixture
def schema(db) -> dict:
    response = APIClient().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_operation_documents_the_shared_error_statuses_as_problem_json(schema):
    for label, operation in operations(schema):
        responses = operation["responses"]
        parameters = operation.get("parameters", [])
        expected = {"401", "403", "406", "429"}
        if any(p["in"] == "path" for p in parameters):
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
            # The tus upload endpoint takes the file's bytes; every other body is JSON.
            media = "application/offset+octet-stream" if label.endswith("/upload/") else None
            assert list(operation["requestBody"]["content"]) == [media or "application/json"], label
        if any(p["name"] == "If-Match" for p in parameters):
            expected.add("412")
        assert expected <= set(responses), (label, sorted(responses))
        for code, response in responses.items():
            if int(code) >= 400:
                assert list(response["content"]) == [PROBLEM], (label, code)


def test_conflicts_the_member_endpoints_answer_are_documented(schema):
    members = schema["paths"]["/api/v1/tenants/{tenant}/members/{username}/"]
    assert "409" in members["delete"]["responses"]  # the last admin stays
    assert "409" in members["patch"]["responses"]
    assert "409" in schema["paths"]["/api/v1/tenants/{tenant}/members/"]["post"]["responses"]


LISTS = ["", "{tenant}/events/", "{tenant}/members/", "{tenant}/migrations/"]
LISTS += ["{tenant}/virtualmachines/", "{tenant}/workloads/", "{tenant}/images/"]


@pytest.mark.parametrize("path", LISTS)
def test_lists_are_documented_paginated_with_bounded_limit_and_offset(schema, path):
    operation = schema["paths"][f"/api/v1/tenants/{path}"]["get"]
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert body["$ref"].split("/")[-1].startswith("Paginated")
    params = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert params["limit"]["minimum"] == 1 and params["limit"]["maximum"] == 500
    assert params["offset"]["minimum"] == 0


def test_input_bodies_refuse_unknown_fields_and_say_which_fields_go_together(schema):
    components = schema["components"]["schemas"]
    for name in ("VMCreateRequest", "WorkloadCreateRequest", "MemberCreateRequest"):
        assert components[name]["additionalProperties"] is False, name
    spec = components["VMCreateSpecInRequest"]
    assert spec["anyOf"] == [{"required": ["flavor"]}, {"required": ["vcpus", "memoryMiB"]}]
    assert components["MemberMetadataInRequest"]["properties"]["name"]["minLength"] == 1
    assert components["QuotaHardRequest"]["properties"]["cpu"]["oneOf"][1]["pattern"]


def test_an_empty_event_type_is_documented_as_any_type(schema):
    events = schema["paths"]["/api/v1/tenants/{tenant}/events/"]["get"]
    type_param = next(p for p in events["parameters"] if p["name"] == "type")
    assert "" in type_param["schema"]["enum"]
