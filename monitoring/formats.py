"""Formats shared by the API, websockets, webhooks and pages: the one JSON shape of an
event (websocket messages, the API and webhooks share it) and human times.

Modelled on Kubernetes' core/v1 Event::

    {"uid": "…", "tenant": "acme", "type": "Warning", "reason": "FailedStart",
     "message": "…", "involvedObject": {"kind": "vm", "name": "web1", "uid": ""},
     "source": "reconciler", "count": 3,
     "firstTimestamp": "2025-01-01T10:00:00Z", "lastTimestamp": "2025-01-01T10:04:00Z"}
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.translation import gettext, ngettext

from monitoring.models import Event


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Kubernetes writes times."""
    return value.isoformat().replace("+00:00", "Z")


def event_data(event: Event, *, tenant_slug: str | None = None) -> dict:
    """The event as the API, websocket subscribers and webhooks see it."""
    return {
        "uid": str(event.uid),
        "tenant": tenant_slug or event.tenant.slug,
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "involvedObject": {"kind": event.kind, "name": event.name, "uid": event.object_uid},
        "source": event.source,
        "count": event.count,
        "firstTimestamp": timestamp(event.first_seen),
        "lastTimestamp": timestamp(event.last_seen),
    }


# Human times: static/js/live.js (Isotope.time) words them the same way, so a page that
# refreshes them live does not change their style.
_AGO_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def _ago_words(unit: str, count: int) -> str:
    if unit == "day":
        return ngettext("%(count)s day ago", "%(count)s days ago", count) % {"count": count}
    if unit == "hour":
        return ngettext("%(count)s hour ago", "%(count)s hours ago", count) % {"count": count}
    if unit == "minute":
        return ngettext("%(count)s minute ago", "%(count)s minutes ago", count) % {"count": count}
    return ngettext("%(count)s second ago", "%(count)s seconds ago", count) % {"count": count}


def ago(value: datetime, now: datetime | None = None) -> str:
    """How long ago ``value`` was: "just now", "12 seconds ago", "1 minute ago",
    "3 hours ago", "2 days ago"."""
    seconds = max(0, int(((now or timezone.now()) - value).total_seconds()))
    if seconds < 5:
        return gettext("just now")
    unit, size = next((u, s) for u, s in _AGO_UNITS if seconds >= s)
    return _ago_words(unit, seconds // size)


def duration(seconds: float | None) -> str:
    """A duration for people: "0.4 s", "2.6 s", "42 s", "1 min 5 s", "2 h 3 min"."""
    if seconds is None:
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
