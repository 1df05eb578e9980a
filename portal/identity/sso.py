"""Single sign-on: who an OIDC sign-in becomes, what their groups grant, and the audit.

- A first sign-on creates the user (username from the app's ``username_claim``; when a
  local account already has that name allauth picks a free one, so an SSO identity
  never takes over a local account, nor by email: ``SOCIALACCOUNT_EMAIL_AUTHENTICATION``
  is off).
- Every sign-on re-evaluates the groups claim (``groups_claim``) against the group
  mappings (``tenants.services.membership_sync_groups``).
- Every failure (refused by the provider, tampered state, an ID token that does not
  verify, a provider that is down) renders one plain error page and is audited
  (``auth.sso.error``); nothing is created.
"""

from __future__ import annotations

import functools
import logging

from allauth.account.signals import user_logged_in
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.providers.base.constants import AuthError
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest
from django.shortcuts import render

from tenants import services
from tenants.choices import AuditOutcome

logger = logging.getLogger(__name__)


def sso_claims(sociallogin) -> dict:
    """The sign-in's claims: the ID token's, completed by the userinfo answer."""
    data = sociallogin.account.extra_data or {}
    claims = dict(data.get("id_token") or {})
    claims.update(data.get("userinfo") or {})
    return claims


def sso_groups(sociallogin) -> list[str]:
    """The groups claim named by the app's settings (``groups_claim``, default groups)."""
    app = sociallogin.account.get_provider().app
    claim = app.settings.get("groups_claim") or "groups"
    value = sso_claims(sociallogin).get(claim) or []
    if isinstance(value, str):
        value = [value]
    return sorted({str(group) for group in value if isinstance(group, str | int)})


def _provider_name(provider) -> str:
    app = getattr(provider, "app", None)
    return (getattr(app, "provider_id", "") or getattr(provider, "id", "")) if provider else ""


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin) -> bool:
        return True  # users are created at their first sign-on

    def get_requests_session(self):
        """Requests to the provider trust ``ISOTOPE_OIDC_CA_FILE`` when it is set
        (a provider whose certificate comes from a private CA)."""
        session = super().get_requests_session()
        ca_file = settings.ISOTOPE_OIDC.get("ca_file")
        if ca_file:
            # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
            session.request = functools.partial(session.request, verify=ca_file)
        return session

    def populate_user(self, request: HttpRequest, sociallogin, data):
        user = super().populate_user(request, sociallogin, data)
        app = sociallogin.account.get_provider().app
        claim = app.settings.get("username_claim") or "preferred_username"
        wanted = sso_claims(sociallogin).get(claim)
        if isinstance(wanted, str) and wanted.strip():
            user.username = wanted.strip()[:150]
        return user

    def save_user(self, request: HttpRequest, sociallogin, form=None):
        user = super().save_user(request, sociallogin, form)
        provider = sociallogin.account.provider
        services.audit_record(
            actor=f"sso:{provider}",
            action="auth.sso.signup",
            target=f"user/{user.username}",
            detail={"provider": provider, "subject": sociallogin.account.uid},
        )
        return user

    def on_authentication_error(
        self, request: HttpRequest, provider, error=None, exception=None, extra_context=None
    ) -> None:
        """Audit the failure and answer one plain page saying what went wrong."""
        reason, detail, status = _explain(request, error, exception)
        name = _provider_name(provider)
        services.audit_record(
            actor="anonymous",
            action="auth.sso.error",
            target=f"sso/{name}",
            outcome=AuditOutcome.FAILED,
            detail={
                "provider": name,
                "error": str(error or ""),
                "reason": reason,
                "detail": detail,
            },
        )
        logger.info("single sign-on via %s failed: %s (%s)", name, reason, detail)
        context = {"reason": reason, "detail": detail, "provider": provider}
        template = "socialaccount/authentication_error.html"
        response = render(request, template, context, status=status)
        raise ImmediateHttpResponse(response)


def _explain(request: HttpRequest, error, exception) -> tuple[str, str, int]:
    """(what the person reads, the technical detail, HTTP status)."""
    refused = request.GET.get("error")
    if refused:
        description = request.GET.get("error_description", "")[:300]
        if error == AuthError.CANCELLED:
            reason = f"The sign-in was cancelled at the identity provider. {description}"
            return reason, refused, 401
        return f"The identity provider refused the sign-in: {description or refused}", refused, 401
    if exception is not None:
        text = str(exception)[:500]
        if "did not answer" in text:
            return "The identity provider cannot be reached. Try again later.", text, 502
        if "id_token" in text.lower() or "nonce" in text.lower():
            return "The identity provider's answer could not be verified.", text, 401
        return "The sign-in could not be completed.", text, 401
    if "state" in request.GET or request.path.endswith("/callback/"):
        return (
            "This sign-in has expired or was not started here (its state does not match). "
            "Start again from the sign-in page.",
            "unknown state",
            401,
        )
    return "The sign-in could not be completed.", str(error or ""), 401


@receiver(user_logged_in, dispatch_uid="portal.identity.sso.sync_groups")
def on_user_logged_in(sender, request, user, sociallogin=None, **kwargs) -> None:
    """At every single sign-on: memberships from the groups claim, then the audit."""
    if sociallogin is None:
        return
    provider = sociallogin.account.provider
    groups = sso_groups(sociallogin)
    result = services.membership_sync_groups(user=user, groups=groups, provider=provider)
    services.audit_record(
        actor=user,
        action="auth.sso.login",
        target=f"user/{user.username}",
        detail={
            "provider": provider,
            "groups": groups,
            "added": result.added,
            "changed": result.changed,
            "removed": result.removed,
            "kept": result.kept,
        },
    )
