"""``/login/`` and ``/logout/`` (SPEC URLs) on django-allauth's flows."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from allauth.account.views import LoginView as AllauthLoginView
from allauth.account.views import LogoutView as AllauthLogoutView
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from requests import RequestException

from portal.identity.oidc.views import SESSION_ID_TOKEN, SESSION_PROVIDER

logger = logging.getLogger(__name__)


class LoginView(AllauthLoginView):
    """The portal's sign-in page: username and password (then the second factor, when
    the account has one), and a button per single sign-on provider."""

    template_name = "registration/login.html"


class LogoutView(AllauthLogoutView):
    """Ends the portal session; after a single sign-on, also the provider's session
    (OpenID Connect RP-initiated logout) when it offers an ``end_session_endpoint``,
    which then sends the browser back to ``/login/``."""

    def post(self, request: HttpRequest, *args, **kwargs):
        id_token = request.session.get(SESSION_ID_TOKEN)
        provider_id = request.session.get(SESSION_PROVIDER)
        response = super().post(request, *args, **kwargs)
        if id_token and provider_id:
            end = end_session_url(request, provider_id, id_token)
            if end:
                return HttpResponseRedirect(end)
        return response


def end_session_url(request: HttpRequest, provider_id: str, id_token: str) -> str | None:
    """The provider's logout URL for this session, or None when it has none (or cannot
    be asked: the portal session is over either way)."""
    try:
        provider = get_adapter().get_provider(request, provider_id)
        endpoint = provider.get_oauth2_adapter(request).openid_config.get("end_session_endpoint")
    except (ObjectDoesNotExist, OAuth2Error, RequestException) as error:
        logger.info("no RP-initiated logout at %s: %s", provider_id, error)
        return None
    if not endpoint:
        return None
    query = urlencode(
        {
            "id_token_hint": id_token,
            "client_id": provider.app.client_id,
            "post_logout_redirect_uri": request.build_absolute_uri(reverse("login")),
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
