"""The Content-Security-Policy header: django-csp's middleware, with the one source that
comes from configuration read per request, the single sign-on provider's origin.

The policy itself is ``settings.CONTENT_SECURITY_POLICY``; a view that needs another
(the workload log that its own page frames) says so with django-csp's decorators.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def sso_origins() -> list[str]:
    """The origins of the configured OpenID Connect providers (``ISOTOPE_OIDC_ISSUER``).

    The SSO button's form posts to the portal, which redirects to the provider; signing
    out redirects to its end-session endpoint. Chromium checks ``form-action`` on the
    redirects of a form submission too, so without the provider's origin there both
    would stop on a blocked page.
    """
    providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", {})
    apps = providers.get("openid_connect", {}).get("APPS", [])
    origins = []
    for app in apps:
        parts = urlsplit(app.get("settings", {}).get("server_url", ""))
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.append(f"{parts.scheme}://{parts.netloc}")
    return origins


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware; ``form-action`` also allows the SSO provider's origin."""

    def get_policy_parts(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        report_only: bool = False,
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        origins = sso_origins()
        if origins:
            update = dict(parts.update or {})
            update["form-action"] = [*update.get("form-action", ()), *origins]
            parts.update = update
        return parts
