"""The one JSON shape of an event: websocket messages, the API and webhooks share it.

Modelled on Kubernetes' core/v1 Event::

    {"uid": "…", "tenant": "acme", "type": "Warning", "reason": "FailedStart",
     "message": "…", "involvedObject": {"kind": "vm", "name": "web1", "uid": ""},
     "source": "reconciler", "count": 3,
     "firstTimestamp": "2025-01-01T10:00:00Z", "lastTimestamp": "2025-01-01T10:04:00Z"}
"""

from __future__ import annotations

from datetime import datetime

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
