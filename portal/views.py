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
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
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
@require_http_methods(["GET"])
def search(request):
    """The top bar's search: the user's tenants' VMs, workloads, volumes and images by
    name or label (``compute.selectors.search`` keeps every tenant's objects its own)."""
    from compute.selectors import SEARCH_MAX_LENGTH
    from compute.selectors import search as compute_search

    q = request.GET.get("q", "")
    error = ""
    if len(q) > SEARCH_MAX_LENGTH:
        error = gettext("The search is at most %(max)s characters.") % {"max": SEARCH_MAX_LENGTH}
        q = ""
    results = compute_search(request.user, q)
    sections = []
    for kind, heading, icon, detail, more in SEARCH_SECTIONS:
        hits = [
            {
                "name": obj.name,
                "phase": obj.phase,
                "tenant": obj.tenant.name,
                "labels": getattr(obj, "labels", None) or {},
                "note": getattr(obj, "display_name", ""),
                "href": reverse(detail, args=[obj.tenant.slug, obj.name])
                if detail
                else reverse("image-list", args=[obj.tenant.slug]),
            }
            for obj in getattr(results, kind)
        ]
        if hits:
            more_text = more if kind in results.more else ""
            sections.append(
                {"kind": kind, "heading": heading, "icon": icon, "hits": hits, "more": more_text}
            )
    return render(
        request,
        "portal/search.html",
        {"results": results, "sections": sections, "q": results.q, "error": error},
        status=400 if error else 200,
    )


# What the search page shows per kind: heading, icon, the detail page's route (images
# have none: their tenant's list) and what it says when a list was cut short.
SEARCH_SECTIONS = (
    (
        "vms",
        _("Virtual machines"),
        "pc-display",
        "vm-detail",
        _("More VMs match: narrow the search."),
    ),
    (
        "workloads",
        _("Workloads"),
        "boxes",
        "workload-detail",
        _("More workloads match: narrow the search."),
    ),
    (
        "volumes",
        _("Volumes"),
        "device-hdd",
        "volume-detail",
        _("More volumes match: narrow the search."),
    ),
    ("images", _("Images"), "hdd-stack", None, _("More images match: narrow the search.")),
)


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
        messages.success(
            request, gettext("Token “%(name)s” created. Copy it now.") % {"name": token.name}
        )
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
        messages.success(request, gettext("Token “%(name)s” revoked.") % {"name": token.name})
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
    messages.success(request, gettext("Confirmation settings saved."))
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


@require_POST
def preferences_language(request):
    """The top bar's language switch. A signed-in user's choice is stored (their language
    on every device); everyone's is also kept in the language cookie, which is what a
    signed-out visitor (the sign-in page) has. ``language=""`` follows the browser again."""
    from django.conf import settings
    from django.utils import translation

    language = request.POST.get("language", "")
    codes = [code for code, _name in settings.LANGUAGES]
    if request.user.is_authenticated:
        try:
            services.preference_set_language(user=request.user, language=language)
        except ValidationError as error:
            messages.error(request, error.message)
            language = None
    elif language not in ("", *codes):
        language = None
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = reverse("profile") if request.user.is_authenticated else reverse("login")
    response = redirect(back)
    if language:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            path=settings.LANGUAGE_COOKIE_PATH,
            secure=settings.LANGUAGE_COOKIE_SECURE,
            httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
        )
        translation.activate(language)
    elif language == "":
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME, path=settings.LANGUAGE_COOKIE_PATH)
    return response


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
