"""allauth's OpenID Connect provider, made strict.

allauth's own provider sends no ``nonce`` and, when the ID token came straight from the
token endpoint over TLS, skips its signature (the specification allows that). Isotope
wants every ID token checked the same way whatever the transport: this provider

- sends a fresh ``nonce`` with each authorisation request, keeps it in the sign-in's
  state (in the session) and refuses an ID token that does not carry it;
- always verifies the ID token's signature against the provider's JWKS (so an unsigned
  ``alg: none`` token is refused), its issuer, audience (our client id) and expiry;
- uses PKCE (S256) unless an app's settings turn it off;
- turns a provider that cannot be reached into the sign-in error page, not a 500.

Settings (``SOCIALACCOUNT_PROVIDERS["openid_connect"]["provider_class"]``) select it;
its URLs keep allauth's names (``openid_connect_login``/``_callback``).
"""

from __future__ import annotations

import secrets

from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from django.http import HttpRequest
from requests import RequestException

from portal.identity.oidc.views import IsotopeOIDCAdapter


class IsotopeOIDCProvider(OpenIDConnectProvider):
    oauth2_adapter_class = IsotopeOIDCAdapter
    package = "portal.identity.oidc"
    pkce_enabled_default = True

    def get_oauth2_adapter(self, request: HttpRequest):
        return self.oauth2_adapter_class(request, self.app.provider_id)

    def get_scope(self):
        return [str(scope) for scope in super().get_scope()]

    def redirect(self, request: HttpRequest, process, next_url=None, data=None, **kwargs):
        """The authorisation request, with a nonce kept in the sign-in's state."""
        nonce = secrets.token_urlsafe(32)
        auth_params = kwargs.pop("auth_params", None)
        auth_params = dict(auth_params if auth_params is not None else self.get_auth_params())
        auth_params["nonce"] = nonce
        try:
            return super().redirect(
                request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs
            )
        except (OAuth2Error, RequestException) as error:
            # The discovery document could not be fetched: the provider is down.
            return render_authentication_error(request, self, exception=error)


provider_classes = [IsotopeOIDCProvider]
