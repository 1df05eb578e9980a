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
