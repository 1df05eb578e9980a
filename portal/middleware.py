"""Request context the service layer reads without threading it through every call."""

from __future__ import annotations

import contextvars

source_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "isotope_source_ip", default=None
)


def client_ip(request) -> str | None:
    """The peer address. ``X-Forwarded-For`` is trusted only from a configured proxy."""
    from django.conf import settings

    remote = request.META.get("REMOTE_ADDR")
    proxies = getattr(settings, "ISOTOPE_TRUSTED_PROXIES", ())
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if forwarded and remote in proxies:
        return forwarded.split(",")[-1].strip() or remote
    return remote


class RequestContextMiddleware:
    """Makes the client's IP available to services for the audit log."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = source_ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            source_ip.reset(token)


class RejectNulMiddleware:
    """Answers 400 to a request with a NUL character in its path, query, form fields,
    cookies or headers. PostgreSQL text cannot hold NUL, so such a value reaching any
    lookup or write (a member's username in the path, ``?vm=``, a token's name, a session
    cookie) would be a 500; no meaningful request contains one. API paths get
    problem+json."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _has_nul(request):
            from django.http import HttpResponseBadRequest

            from portal.api.errors import problem_response

            detail = "The request contains a NUL character."
            if request.path_info.startswith("/api/"):
                return problem_response(400, detail)
            return HttpResponseBadRequest(detail, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_nul(request) -> bool:
    if "\x00" in request.path_info:
        return True
    if any("\x00" in key or "\x00" in value for key, value in request.COOKIES.items()):
        return True
    # Form fields too (JSON bodies are DRF's: its fields refuse NUL with a field error).
    fields = [request.GET, *([request.POST] if request.content_type in _FORM_TYPES else [])]
    for query in fields:
        for key, values in query.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                return True
    return any(
        "\x00" in str(value) for key, value in request.META.items() if key.startswith("HTTP_")
    )


class UserLanguageMiddleware:
    """A signed-in user's stored language (``UserPreference.language``) wins over the
    browser's ``Accept-Language`` and the language cookie that ``LocaleMiddleware`` read;
    an empty choice leaves theirs. The preference row is kept on the request
    (``request.portal_preference``) for the layout's theme as well."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.utils import translation

        request.portal_preference = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            from tenants.models import UserPreference

            request.portal_preference = UserPreference.objects.filter(user=user).first()
            language = request.portal_preference and request.portal_preference.language
            if language and translation.check_for_language(language):
                translation.activate(language)
                request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)
