"""Template context for the top bar's notification bell (signed-in users)."""

from __future__ import annotations


def notifications(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from monitoring.notifications import notifications_recent, unread_count

    return {
        "notifications_unread": unread_count(user.pk),
        "notifications_recent": notifications_recent(user.pk, limit=6),
    }
