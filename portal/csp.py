"""The Content-Security-Policy header: django-csp's middleware, with the sources that
come from configuration read per request: where forms may lead (the single sign-on
provider).

The policy itself is ``settings.CONTENT_SECURITY_POLICY``; a view that needs another
(the workload log that its own page frames) says so with django-csp's decorators.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def _origin(url: str) -> str | None:
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def form_action_origins() -> list[str]:
    """Where the portal's forms may lead besides itself: the OpenID Connect provider of
    the settings (``ISOTOPE_OIDC_ISSUER``) and ``ISOTOPE_CSP_FORM_ACTION``.

    The SSO button's form posts to the portal, which redirects to the provider; signing
    out redirects to its end-session endpoint. Chromium checks ``form-action`` on every
    redirect of a form submission, so a provider that sends the browser on to another
    origin (Ory Hydra's login pages, a federated directory) needs that origin in
    ``ISOTOPE_CSP_FORM_ACTION``, as does a provider added in Django admin: read here it
    would cost every response a query.
    """
    providers = getattr(settings, "SOCIALACCOUNT_PROVIDERS", {})
    apps = providers.get("openid_connect", {}).get("APPS", [])
    origins = [_origin(app.get("settings", {}).get("server_url", "")) for app in apps]
    origins += getattr(settings, "ISOTOPE_CSP_FORM_ACTION", [])
    return list(dict.fromkeys(o for o in origins if o))


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware; ``form-action`` also allows :func:`form_action_origins`."""

    def get_policy_parts(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        report_only: bool = False,
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        origins = form_action_origins()
        if origins:
            update = dict(parts.update or {})
            update["form-action"] = [*update.get("form-action", ()), *origins]
            parts.update = update
        return parts
