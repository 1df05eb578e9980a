"""The notification centre's pages: the list, marking read, opening one, and the
profile page's notification preferences. Every user sees only their own."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, ngettext
from django.views.decorators.http import require_GET, require_POST

from monitoring import notifications
from monitoring.choices import NotificationKind
from monitoring.models import Notification
from portal.exceptions import ApplicationError, NotFound

PAGE_SIZE = 50


def _safe_path(request, path: str, fallback: str) -> str:
    """A path inside the portal, never another site (stored links and ``next``)."""
    if path and path.startswith("/") and url_has_allowed_host_and_scheme(path, None):
        return path
    return fallback


@login_required
@require_GET
def notification_list(request):
    mine = Notification.objects.filter(user=request.user, in_app=True)
    unread_only = request.GET.get("unread") == "1"
    shown = mine.filter(read__isnull=True) if unread_only else mine
    page = Paginator(shown, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "monitoring/notification_list.html",
        {
            "page": page,
            "unread_only": unread_only,
            "unread": notifications.unread_count(request.user.pk),
        },
    )


@login_required
@require_POST
def notification_read(request):
    """Mark one notification (``uid``) or all of them read; back to where it came from."""
    uid = request.POST.get("uid") or None
    try:
        changed = notifications.notification_mark_read(user=request.user, uid=uid)
    except NotFound:
        raise Http404("No such notification.") from None
    if uid is None:
        messages.success(
            request,
            ngettext(
                "%(changed)s notification marked read.",
                "%(changed)s notifications marked read.",
                changed,
            )
            % {"changed": changed},
        )
    return redirect(_safe_path(request, request.POST.get("next", ""), "/notifications/"))


@login_required
@require_GET
def notification_open(request, uid):
    """Open a notification: it is read now; go to what it is about."""
    notification = Notification.objects.filter(user=request.user, uid=uid).first()
    if notification is None:
        raise Http404("No such notification.")
    notifications.notification_mark_read(user=request.user, uid=str(uid))
    return redirect(_safe_path(request, notification.link, "/notifications/"))


@login_required
@require_POST
def notification_preferences(request):
    """The profile page's notification switches: per kind, in the portal and by email."""
    in_app = set(request.POST.getlist("in_app"))
    email = set(request.POST.getlist("email"))
    try:
        for kind in NotificationKind.values:
            notifications.notification_preference_set(
                user=request.user, kind=kind, in_app=kind in in_app, email=kind in email
            )
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, gettext("Notification settings saved."))
    return redirect("profile")
