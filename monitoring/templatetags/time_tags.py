"""Human times for templates, worded like static/js/live.js words them live.

``{{ vm.phase_changed|ago }}`` → "3 minutes ago" (put it in ``<time data-ago
datetime=…>`` and live.js keeps it current); ``{{ m.finished|since:m.started }}`` →
"2.6 s", "1 min 5 s".
"""

from __future__ import annotations

from datetime import datetime

from django import template

from monitoring import formats

register = template.Library()


@register.filter
def ago(value: datetime | None) -> str:
    return formats.ago(value) if value else ""


@register.filter
def since(end: datetime | None, start: datetime | None) -> str:
    """The duration from ``start`` to ``end``, or "—" when either is missing."""
    if not end or not start:
        return "—"
    return formats.duration((end - start).total_seconds())
