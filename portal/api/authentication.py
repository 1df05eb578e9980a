"""``Authorization: Token iso_<id>_<secret>`` authentication against hashed tokens.

Failures are counted per client address (``TokenFailureThrottle``, Redis): past the
limit every token request from that address is answered 429 with ``Retry-After`` until
the window passes, and the lockout is audited once (``api.token.lockout``).
"""

from __future__ import annotations

import hmac
import re

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from portal import sql
from portal.api.throttles import TokenFailureThrottle
from portal.middleware import client_ip
from tenants import selectors
from tenants.choices import AuditOutcome
from tenants.models import ApiToken
from tenants.services import TOKEN_PREFIX, audit_record, token_hash

KEY_ID = re.compile(r"[0-9a-f]{1,64}")


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        throttle = TokenFailureThrottle()
        wait = throttle.refused(request)
        if wait is not None:
            raise exceptions.Throttled(
                wait,
                detail="Too many failed token authentications from your address; "
                f"try again in {int(wait)} seconds.",
            )
        if len(header) != 2:
            self._failed(request, throttle, "")
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            key = header[1].decode("ascii")
        except UnicodeError:
            self._failed(request, throttle, "")
            raise exceptions.AuthenticationFailed("Malformed token.") from None
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        # The id is looked up in the database: only the characters token_create uses.
        if prefix != TOKEN_PREFIX or not KEY_ID.fullmatch(key_id) or not secret:
            self._failed(request, throttle, "")
            raise exceptions.AuthenticationFailed("Malformed token.")
        # Written out (portal.sql): every API request reads it, with its user, and under
        # /tenants/<slug>/ the tenant and the user's role in it (tenant_get's reads).
        table = ApiToken._meta.db_table
        slug = (getattr(request, "parser_context", None) or {}).get("kwargs", {}).get("tenant")
        along = selectors.tenant_along(slug, f"{table}.user_id") if isinstance(slug, str) else {}
        token = sql.first(ApiToken, f"{table}.key_id = %s", [key_id], related=("user",), **along)
        now = timezone.now()
        if (
            token is None
            or not hmac.compare_digest(token.key_hash, token_hash(secret))
            or token.revoked is not None
            or (token.expires is not None and token.expires <= now)
            or not token.user.is_active
        ):
            self._failed(request, throttle, key_id)
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        if token.last_used is None or (now - token.last_used).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        if along:
            selectors.tenant_along_keep(token.user, slug, token)
        return token.user, token

    @staticmethod
    def _failed(request, throttle: TokenFailureThrottle, key_id: str) -> None:
        """Count the failure; audit the one that locks the address out."""
        if throttle.failure(request):
            audit_record(
                actor="anonymous",
                action="api.token.lockout",
                target=f"token/{key_id[:32]}" if key_id else "",
                outcome=AuditOutcome.DENIED,
                detail={"failures": throttle.num_requests, "windowSeconds": throttle.duration},
                ip=client_ip(request),
            )

    def authenticate_header(self, request):
        return self.keyword


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the token scheme in the OpenAPI schema."""

    target_class = "portal.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token iso_<id>_<secret>`; create one on your profile page.",
        }
