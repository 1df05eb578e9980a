"""Template context for the base layout: the tenant switcher and navigation."""

from __future__ import annotations

from tenants.choices import Role, Theme
from tenants.permissions import ROLE_ACTIONS


def navigation(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"theme": "auto"}
    from tenants.models import UserPreference
    from tenants.selectors import nav_tenants

    if hasattr(request, "portal_preference"):
        preference = request.portal_preference
    else:
        preference = UserPreference.objects.filter(user=user).first()

    tenant = getattr(request, "tenant", None)
    role = getattr(request, "role", None)
    return {
        "nav_tenants": nav_tenants(user),
        "current_tenant": tenant,
        "current_role": role,
        "current_role_label": Role(role).label if role in Role.values else role,
        # ``perms_in_tenant.vm_create`` etc. for templates: what the role allows here.
        "allowed": {a.replace(".", "_"): True for a in ROLE_ACTIONS.get(role, ())},
        # The stored theme is rendered into <html> so the first paint is right (base.html).
        "theme": preference.theme if preference else "auto",
        "theme_choices": Theme.choices,
        # "" (follow the browser) or the code the user chose in the language switch.
        "language_choice": preference.language if preference else "",
    }
