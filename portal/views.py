"""Project-level pages: dashboard, profile (API tokens), sign-in lockout, health check."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from portal.exceptions import ApplicationError, ValidationError
from portal.reveal import reveal_done, reveal_stash, reveal_take
from tenants import selectors, services

NEW_TOKEN = "api_token"


@login_required
def dashboard(request):
    tenants = list(selectors.tenants_for_user(request.user).select_related("quota"))
    cards = [
        {
            "tenant": t,
            "role": selectors.role_of(request.user, t),
            "usage": selectors.quota_usage(t),
        }
        for t in tenants
    ]
    return render(request, "portal/dashboard.html", {"cards": cards})


@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    if request.method == "POST":
        days = request.POST.get("expires_days", "").strip()
        try:
            expires = None
            if days:
                if not days.isdigit() or not 1 <= int(days) <= 3650:
                    raise ValidationError(
                        "Expiry must be a whole number of days between 1 and 3650."
                    )
                expires = timezone.now() + timedelta(days=int(days))
            token, key = services.token_create(
                user=request.user, name=request.POST.get("name", ""), expires=expires
            )
        except ApplicationError as error:
            messages.error(request, error.message)
            return redirect("profile")
        messages.success(request, f"Token “{token.name}” created. Copy it now.")
        # Post/redirect/get: the key is shown once, a reload cannot mint another, and
        # it never sits readable in the session store (portal.reveal).
        response = redirect("profile")
        reveal_stash(request, response, name=NEW_TOKEN, secret=key)
        return response
    response = render(
        request,
        "portal/profile.html",
        {
            "tokens": request.user.api_tokens.all(),
            "new_key": reveal_take(request, name=NEW_TOKEN),
            "memberships": selectors.user_memberships(request.user),
        },
    )
    response["Cache-Control"] = "no-store"
    reveal_done(request, response, name=NEW_TOKEN)
    return response


@login_required
@require_POST
def token_revoke(request, key_id: str):
    try:
        token = services.token_revoke(user=request.user, key_id=key_id)
        messages.success(request, f"Token “{token.name}” revoked.")
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect("profile")


def login_locked_out(request, original_response=None, credentials=None):
    """The sign-in page again (the portal's or the admin's), answered 429 with
    ``Retry-After``: too many failures for this username or from this address
    (django-axes' ``AXES_LOCKOUT_CALLABLE``)."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    minutes = max(1, round(seconds / 60))
    lockout = (
        "Too many failed sign-in attempts for this username or from your address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
        "or ask a platform admin to unlock it."
    )
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    if request.path.startswith("/admin/"):
        context = {
            **admin.site.each_context(request),
            "title": "Log in",
            "app_path": request.get_full_path(),
            "form": AdminAuthenticationForm(request, initial={"username": username}),
            "username": request.user.get_username(),
            "lockout": lockout,
        }
        template = "admin/login.html"
    else:
        context = {
            "form": AuthenticationForm(request, initial={"username": username}),
            "next": request.POST.get("next", ""),
            "lockout": lockout,
        }
        template = "registration/login.html"
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(seconds)
    return response


@login_required
@require_POST
def preferences_confirmations(request):
    """The profile page's confirmation switches: every listed one that is checked asks."""
    from tenants.choices import Confirmation

    asked = set(request.POST.getlist("ask"))
    for confirmation in Confirmation.values:
        services.preference_set_confirmation(
            user=request.user, confirmation=confirmation, ask=confirmation in asked
        )
    messages.success(request, "Confirmation settings saved.")
    return redirect("profile")


@login_required
@require_POST
def preferences_theme(request):
    """The top bar's theme switch: store the choice, go back to the page it was made on."""
    try:
        services.preference_set_theme(user=request.user, theme=request.POST.get("theme", ""))
    except ValidationError as error:
        messages.error(request, error.message)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = reverse("profile")
    return redirect(back)


def healthz(request):
    """Liveness and database reachability, for load balancers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found(request, exception=None):
    """404: problem+json under /api/, the portal's page elsewhere."""
    if request.path.startswith("/api/"):
        body = {
            "type": "https://isotope.dev/problems/not-found",
            "title": "Not found",
            "status": 404,
            "detail": f"No API resource at {request.path}.",
        }
        return JsonResponse(body, status=404, content_type="application/problem+json")
    return render(request, "404.html", {"exception": exception}, status=404)
