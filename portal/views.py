"""Project-level pages: dashboard, profile (API tokens), health check."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from portal.exceptions import ApplicationError, ValidationError
from tenants import selectors, services


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
            # Post/redirect/get: the key is shown once, and a reload cannot mint another.
            request.session["isotope_new_token"] = key
            messages.success(request, f"Token “{token.name}” created. Copy it now.")
        except ApplicationError as error:
            messages.error(request, error.message)
        return redirect("profile")
    return render(
        request,
        "portal/profile.html",
        {
            "tokens": request.user.api_tokens.all(),
            "new_key": request.session.pop("isotope_new_token", None),
            "memberships": selectors.user_memberships(request.user),
        },
    )


@login_required
@require_POST
def token_revoke(request, key_id: str):
    try:
        token = services.token_revoke(user=request.user, key_id=key_id)
        messages.success(request, f"Token “{token.name}” revoked.")
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect("profile")


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
