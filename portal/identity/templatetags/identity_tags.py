"""``{% sign_in_security %}``: the profile page's card for second factors and SSO."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django import template
from django.conf import settings

from portal.identity.middleware import session_has_second_factor

register = template.Library()


@register.inclusion_tag("identity/sign_in_security.html", takes_context=True)
def sign_in_security(context) -> dict:
    request = context["request"]
    user = request.user
    kinds = {a.type: a for a in Authenticator.objects.filter(user=user)}
    recovery = kinds.get(Authenticator.Type.RECOVERY_CODES)
    unused = len(recovery.wrap().get_unused_codes()) if recovery else 0
    memberships = user.memberships.select_related("tenant")
    required_by = [m.tenant for m in memberships if m.tenant.require_2fa]
    return {
        "totp": Authenticator.Type.TOTP in kinds,
        "webauthn": Authenticator.Type.WEBAUTHN in kinds,
        "recovery_unused": unused if recovery else None,
        "this_session": session_has_second_factor(request),
        "sso_accounts": list(SocialAccount.objects.filter(user=user)),
        "staff_required": settings.ISOTOPE_REQUIRE_2FA_STAFF and user.is_staff,
        "required_by": required_by,
    }
