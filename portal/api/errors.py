"""Errors as ``application/problem+json`` (RFC 9457) with field ``errors``."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpResponse, JsonResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from portal.api.parsers import BodyTooLarge
from portal.exceptions import ApplicationError, QuotaExceeded

logger = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TYPE_BASE = "https://isotope.dev/problems/"

_TITLES = {
    400: ("invalid", _("Invalid input")),
    401: ("unauthenticated", _("Authentication required")),
    403: ("forbidden", _("Forbidden")),
    404: ("not-found", _("Not found")),
    405: ("method-not-allowed", _("Method not allowed")),
    406: ("not-acceptable", _("Not acceptable")),
    409: ("conflict", _("Conflict")),
    412: ("precondition-failed", _("Precondition failed")),
    413: ("too-large", _("Request body too large")),
    415: ("unsupported-media-type", _("Unsupported media type")),
    428: ("precondition-required", _("Precondition required")),
    429: ("throttled", _("Too many requests")),
}


class ShortfallSerializer(serializers.Serializer):
    resource = serializers.CharField()
    requested = serializers.CharField()
    left = serializers.CharField()
    limit = serializers.CharField()
    unit = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """An error (RFC 9457), as documented in the OpenAPI schema."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Field path → messages.",
    )
    resource = serializers.CharField(required=False, help_text="Quota refusals: the resource.")
    requested = serializers.CharField(required=False)
    left = serializers.CharField(required=False)
    limit = serializers.CharField(required=False)
    unit = serializers.CharField(required=False)
    exceeded = serializers.ListField(
        child=ShortfallSerializer(),
        required=False,
        help_text="Quota refusals: every resource over its limit.",
    )

    class Meta:
        ref_name = "Problem"


def problem(
    status_code: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: dict | None = None,
    extra: dict | None = None,
    headers: dict | None = None,
) -> Response:
    default_slug, default_title = _TITLES.get(status_code, ("error", _("Error")))
    body = {
        "type": TYPE_BASE + (slug or default_slug),
        # Titles are lazy translations: the client's language (Accept-Language) or the
        # signed-in user's choice.
        "title": str(title or default_title),
        "status": status_code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    response = Response(body, status=status_code, headers=headers)
    response.content_type = PROBLEM
    return response


def api_field_errors(
    error: ApplicationError, *, fields: dict[str, str], quota_fields: dict[str, str]
) -> ApplicationError:
    """Rename a service error's fields to the API's paths (``fields``: service name →
    dotted path). A quota refusal keeps each resource over its limit and also names the
    spec field that asked for too much (``quota_fields``: resource → dotted path)."""
    if isinstance(error, QuotaExceeded):
        for shortfall in error.shortfalls:
            field = quota_fields.get(shortfall.resource)
            if field:
                error.errors = {**error.errors, field: [shortfall.message]}
    else:
        error.errors = {fields.get(k, k): v for k, v in error.errors.items()}
    return error


def problem_response(status_code: int, detail: str) -> HttpResponse:
    """A problem+json answer outside DRF (middleware, plain Django views)."""
    slug, title = _TITLES.get(status_code, ("error", _("Error")))
    body = {"type": TYPE_BASE + slug, "title": str(title), "status": status_code, "detail": detail}
    return JsonResponse(body, status=status_code, content_type=PROBLEM)


def flatten_errors(detail) -> dict[str, list[str]]:
    """DRF's nested error detail → ``{"field": ["message", ...]}`` (dotted for nesting)."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            for index, inner in enumerate(value):
                walk(f"{prefix}.{index}" if prefix else str(index), inner)
        else:
            items = value if isinstance(value, list) else [value]
            out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in items)

    walk("", detail)
    return out


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        set_rollback()
        extra = None
        if isinstance(exc, QuotaExceeded):
            # Every resource over its limit in ``exceeded``; the first one's figures also
            # at the top level, as before several were reported.
            extra = {
                **exc.shortfalls[0].as_dict(),
                "exceeded": [s.as_dict() for s in exc.shortfalls],
            }
        return problem(
            exc.status,
            exc.message,
            slug=exc.slug,
            title=exc.title,
            errors=exc.errors or None,
            extra=extra,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        if isinstance(exc, exceptions.ValidationError):
            return problem(
                status.HTTP_400_BAD_REQUEST,
                gettext("The request has invalid fields."),
                errors=flatten_errors(exc.detail),
                headers=headers,
            )
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem(exc.status_code, detail, headers=headers)
    return None
