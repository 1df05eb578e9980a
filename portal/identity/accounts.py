"""Local accounts through django-allauth, with django-axes still counting failures."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from django.http import HttpRequest

from portal.middleware import client_ip


class LoginForm(AllauthLoginForm):
    """allauth's login form under the field names the portal always had (``username``,
    ``password``), so the page, scripts and the lockout page keep working."""

    def add_prefix(self, field_name: str) -> str:
        return "username" if field_name == "login" else super().add_prefix(field_name)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """No self-service sign-up: platform admins create local accounts, and single
        sign-on creates its users itself (``sso.SocialAccountAdapter``)."""
        return False

    def get_client_ip(self, request: HttpRequest) -> str:
        """The client's address as the rest of the portal reads it (only
        ``ISOTOPE_TRUSTED_PROXIES`` may name it in ``X-Forwarded-For``)."""
        return client_ip(request) or super().get_client_ip(request)

    def pre_authenticate(self, request: HttpRequest, **credentials) -> None:
        """Failed passwords are django-axes' to count and lock out (per username and per
        address, audited, lifted in admin); allauth's own count would refuse first with
        another message. Its "login_failed" rate then only counts second-factor codes."""


def axes_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The username django-axes counts a failure against (``AXES_USERNAME_CALLABLE``):
    what was passed to ``authenticate`` or, for the lockout check, the form field."""
    if credentials:
        return credentials.get("username")
    data = getattr(request, "POST", None) or {}
    return data.get("username") or data.get("login")
