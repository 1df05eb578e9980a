"""Channel-layer group names: the one place that spells them.

A group name is also the ``stream`` name clients see in every message and use to
track sequence numbers. Channels allows ASCII letters, digits, ``-``, ``_`` and ``.``
and fewer than 100 characters; tenant slugs (DNS labels) and kinds always fit, and an
object name that does not is replaced by a stable hash of itself.

- ``tenant.<slug>``: everything published in the tenant (events and resource states).
- ``object.<slug>.<kind>.<name>``: what concerns one object.
- ``user.<id>``: control messages to one user's sockets (access re-checks, sign-out).
- ``notify.<id>``: one user's notifications (the bell), a stream like the others.
- ``object.<slug>.vm-metrics.<vm>``: one VM's metric points (kept apart from the VM's
  own stream so pages that do not chart do not receive them).
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
MAX_GROUP = 99


def tenant_group(slug: str) -> str:
    """The stream of everything in tenant ``slug``."""
    return f"tenant.{slug}"


def object_group(slug: str, kind: str, name: str) -> str:
    """The stream of one object (``kind``/``name``) of tenant ``slug``."""
    group = f"object.{slug}.{kind}.{name}"
    if _SAFE.fullmatch(name) and len(group) <= MAX_GROUP:
        return group
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"object.{slug}.{kind}.h-{digest}"


def user_group(user_id: int) -> str:
    """Control messages for every socket of one user."""
    return f"user.{user_id}"


METRICS_KIND = "vm-metrics"


def metrics_group(slug: str, vm_name: str) -> str:
    """The stream of one VM's metric points (``kind`` ``vm-metrics`` for subscribers)."""
    return object_group(slug, METRICS_KIND, vm_name)


def notify_group(user_id: int) -> str:
    """The stream of one user's notifications (only that user may subscribe)."""
    return f"notify.{user_id}"
