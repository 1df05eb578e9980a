"""The OpenAPI schema says every status an operation can answer, errors as problem+json.

drf-spectacular documents what a view declares; the answers that every view can give
(401 without credentials, 403 for the role, 404 for another tenant's object, 400 for a
bad body, query or header, 406 for an Accept header other than JSON, 413 and 415 for a
body too large or not JSON, 412 for a stale If-Match, 429 when throttled) come
from the shared plumbing, so they are added here once. Error bodies are documented as
``application/problem+json``, which is what the exception handler sends. Input
serializers that refuse unknown fields say so (``additionalProperties: false``), and
which fields they need together (``required_any_of`` → ``anyOf``).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from portal.api.errors import PROBLEM, ProblemSerializer
from portal.api.resources import StrictSerializer

DESCRIPTIONS = {
    400: "Invalid input; `errors` names each bad field.",
    401: "No valid credentials.",
    403: "Your role does not allow this, or a quota refused it.",
    404: "No such tenant or object (or not yours).",
    409: "The object's state does not allow this now.",
    412: "`If-Match` names an older resourceVersion.",
    406: "The `Accept` header asks for something other than JSON.",
    413: "The body is larger than `DATA_UPLOAD_MAX_MEMORY_SIZE` (2.5 MB by default).",
    415: "The body is not JSON.",
    422: "The Idempotency-Key was used with another body.",
    429: "Too many requests; retry after `Retry-After` seconds.",
}


class AutoSchema(SpectacularAutoSchema):
    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False  # it answers 400 "Unknown field."
            groups = getattr(serializer, "required_any_of", ())
            if groups:
                schema["anyOf"] = [{"required": list(group)} for group in groups]
        return schema

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        codes = {401, 403, 406, 429}
        parameters = operation.get("parameters", [])
        if any(p["in"] == "path" for p in parameters):
            codes.add(404)
        if operation.get("requestBody") or any(p["in"] != "path" for p in parameters):
            codes.add(400)
        if operation.get("requestBody"):
            codes |= {413, 415}
        if any(p["in"] == "header" and p["name"] == "If-Match" for p in parameters):
            codes.add(412)
        problem = {"schema": self.resolve_serializer(ProblemSerializer, "response").ref}
        for code in codes:
            responses.setdefault(str(code), {})
        for code, response in responses.items():
            if int(code) < 400:
                continue
            response["content"] = {PROBLEM: problem}
            response["description"] = DESCRIPTIONS.get(int(code), response.get("description", ""))
        operation["responses"] = dict(sorted(responses.items()))
        return operation
