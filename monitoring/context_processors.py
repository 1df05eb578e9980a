"""Template context for the top bar's notification bell (signed-in users)."""

from __future__ import annotations


def notifications(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from monitoring.notifications import bell

    unread, recent = bell(user.pk, limit=6)
    return {"notifications_unread": unread, "notifications_recent": recent}
