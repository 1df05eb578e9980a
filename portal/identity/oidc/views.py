"""The OpenID Connect adapter and views behind ``IsotopeOIDCProvider``."""

from __future__ import annotations

import hmac

from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.http import Http404, HttpRequest
from requests import RequestException

# Where the raw ID token of a single sign-on waits for RP-initiated logout (views.logout).
SESSION_ID_TOKEN = "isotope_sso_id_token"
SESSION_PROVIDER = "isotope_sso_provider"


class IsotopeOIDCAdapter(OpenIDConnectOAuth2Adapter):
    expected_nonce: str | None = None

    @property
    def openid_config(self):
        """The provider's discovery document; a provider that is down or answers
        something else is an ``OAuth2Error`` (the error page), never a 500."""
        try:
            return super().openid_config
        except (RequestException, ValueError) as error:
            server = self.get_provider().server_url
            message = f"The identity provider at {server} did not answer: {error}"
            raise OAuth2Error(message) from error

    def complete_login(self, request: HttpRequest, app, token, **kwargs):
        id_token = kwargs["response"].get("id_token")
        if not id_token:
            raise OAuth2Error("The identity provider sent no ID token.")
        login = super().complete_login(request, app, token, **kwargs)
        request.session[SESSION_ID_TOKEN] = id_token
        request.session[SESSION_PROVIDER] = self.provider_id
        return login

    def _decode_id_token(self, app: SocialApp, id_token: str) -> dict:
        """Verify signature, issuer, audience and expiry always, then the nonce."""
        # allauth skips the signature when the token came from the token endpoint.
        self.did_fetch_access_token = False
        try:
            claims = super()._decode_id_token(app, id_token)
        except OAuth2Error as error:
            # allauth says "Invalid id_token"; say why (expired, audience, signature).
            cause = error.__cause__
            raise OAuth2Error(f"Invalid id_token: {cause}" if cause else str(error)) from error
        except (KeyError, ValueError, TypeError) as error:
            # A header without "kid" or "alg" (an unsigned token), a malformed token.
            raise OAuth2Error(f"Invalid id_token: {error!r}") from error
        finally:
            self.did_fetch_access_token = True
        nonce = claims.get("nonce")
        if not (
            self.expected_nonce
            and isinstance(nonce, str)
            and hmac.compare_digest(nonce, self.expected_nonce)
        ):
            raise OAuth2Error("The ID token's nonce does not match this sign-in.")
        return claims


class CallbackView(OAuth2CallbackView):
    def _get_state(self, request: HttpRequest, provider):
        state, response = super()._get_state(request, provider)
        self.adapter.expected_nonce = (state or {}).get("nonce")
        return state, response


def login(request: HttpRequest, provider_id: str):
    """Start a sign-on: a POST redirects to the provider (a GET asks first, as
    ``SOCIALACCOUNT_LOGIN_ON_GET`` is off)."""
    try:
        return OAuth2LoginView.adapter_view(IsotopeOIDCAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None


def callback(request: HttpRequest, provider_id: str):
    try:
        return CallbackView.adapter_view(IsotopeOIDCAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None
