"""Two-factor requirements for browser sessions (``ISOTOPE_REQUIRE_2FA_STAFF`` for
staff on every page, ``Tenant.require_2fa`` for a tenant's pages and API).

A session meets a requirement when it was signed in with a second factor (or enrolled
one since), or through single sign-on — the provider answers for its own factors.
API requests with ``Authorization: Token`` are automation and never asked: token auth
is not subject to the requirement (pages ignore the header: it exempts nothing there).
A tenant's requirement is told only to its members; to others the tenant is a 404.
Without a second factor the person is sent to enrol one (API: 403 problem+json); the
pages that do that stay open.
"""

from __future__ import annotations

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, JsonResponse
from django.shortcuts import redirect

from tenants.models import Tenant
from tenants.selectors import role_of

OPEN_PREFIXES = ("/accounts/", "/logout/", "/login/", "/static/", "/healthz", "/metrics")
STRONG_METHODS = {"mfa", "socialaccount"}


def session_has_second_factor(request: HttpRequest) -> bool:
    """This session signed in with a second factor, enrolled one, or came by SSO."""
    records = get_authentication_records(request, request.user)
    return any(record.get("method") in STRONG_METHODS for record in records)


class SecondFactorRequiredMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.path.startswith("/api/") and (
            request.headers.get("Authorization", "").split(" ")[0].lower() == "token"
        ):
            # API tokens: automation is not asked for a second factor. The API signs in
            # with the token alone (a wrong one is 401); pages never read the header.
            return None
        if request.path.startswith(OPEN_PREFIXES):
            return None
        why = ""
        if settings.ISOTOPE_REQUIRE_2FA_STAFF and user.is_staff:
            why = "Staff accounts need two-factor authentication."
        slug = view_kwargs.get("tenant")
        if not why and isinstance(slug, str):
            # The whole row: the view's tenant lookup uses it (portal.web.tenant_row_read).
            tenant = Tenant.objects.filter(slug=slug).first()
            request.isotope_tenant_row = (slug, tenant)
            # Only its members are asked: to anyone else the tenant is not there (404).
            if tenant is not None and tenant.require_2fa and role_of(user, tenant):
                why = f"The tenant {slug} requires two-factor authentication."
        if not why or session_has_second_factor(request):
            return None
        enrolled = Authenticator.objects.filter(
            user=user, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
        ).exists()
        if request.path.startswith("/api/"):
            return JsonResponse(
                {
                    "type": "https://isotope.dev/problems/second-factor-required",
                    "title": "Second factor required",
                    "status": 403,
                    "detail": f"{why} Sign in with it in the browser, or use an API token.",
                },
                status=403,
                content_type="application/problem+json",
            )
        if enrolled:
            # Enrolled, but this session signed in with the password alone.
            messages.warning(request, f"{why} Sign in again with your authenticator code.")
            return redirect("mfa_reauthenticate")
        messages.warning(request, f"{why} Set up an authenticator app to continue.")
        return redirect("mfa_activate_totp")
