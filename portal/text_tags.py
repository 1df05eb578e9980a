"""``{{ message|localized }}``: a stored message in the reader's language (``portal.texts``).
A builtin of every template (settings.TEMPLATES), as stored messages are shown everywhere."""

from __future__ import annotations

from django import template

from portal.texts import localize

register = template.Library()


@register.filter
def localized(message) -> str:
    return localize(message)
