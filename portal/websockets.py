"""The Origin rule every websocket route obeys (``portal.asgi`` wraps the whole router).

A browser sends the page's origin with every websocket handshake, and the portal's
session cookie goes along whatever page opened the socket. Channels'
``AllowedHostsOriginValidator`` only compares the origin's *host* with
``ALLOWED_HOSTS``: with ``ALLOWED_HOSTS = *`` (development, ``make run``) it accepts
anything, and it ignores the port, so a page served from another port of the same host
could read a tenant's live events with the user's cookie.

The rule here is exact: the ``Origin`` must be present, not ``null``, and either name
the very host and port the socket was opened on (the ``Host`` header, itself valid for
``ALLOWED_HOSTS``) or be listed in ``CSRF_TRUSTED_ORIGINS`` (a portal behind a proxy
that rewrites ``Host``). Anything else is refused at the handshake (HTTP 403), before a
consumer runs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _header(scope: dict, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers") or [] if key == name]


def origin_allowed(scope: dict) -> bool:
    """Whether the handshake in ``scope`` comes from a page of the portal itself."""
    origins, hosts = _header(scope, b"origin"), _header(scope, b"host")
    if len(origins) != 1 or len(hosts) != 1:
        return False
    origin, host = origins[0].strip(), hosts[0].strip().lower()
    if not origin or origin == "null":
        return False
    if origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", []):
        return True
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == host


class SameOriginValidator:
    """ASGI middleware: websocket handshakes failing :func:`origin_allowed` are denied."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def reader_language(scope: dict) -> str:
    """The language the socket's reader reads pages in, as the middleware picks it: their
    stored choice (``UserPreference.language``), else the language cookie, else the
    handshake's ``Accept-Language``. Touches the database: call it from a sync context."""
    from django.http import HttpRequest
    from django.utils import translation

    from tenants.models import UserPreference

    user = scope.get("user")
    if user is not None and user.is_authenticated:
        chosen = UserPreference.objects.filter(user=user).values_list("language", flat=True).first()
        if chosen and translation.check_for_language(chosen):
            return chosen
    request = HttpRequest()
    request.COOKIES = dict(scope.get("cookies") or {})
    languages = _header(scope, b"accept-language")
    if languages:
        request.META["HTTP_ACCEPT_LANGUAGE"] = languages[0]
    return translation.get_language_from_request(request)
