"""Edits made on a page that may be stale: the compare-and-set the portal's forms rely on.

A form shows an object's settings as they were when the page was rendered; by the time
it is sent, someone else (another user, the API) may have changed the object. The form
therefore sends only what the person changed, with the value each field had on the
page, and the service, holding the row's lock, applies it only where that value is
still the current one (or where the object is already as wanted). A field changed on
both sides refuses the whole edit: nothing is saved and the person reloads to see the
other change. The fields the person left alone are not sent, so they cannot revert
someone else's change.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Model
from django.utils.translation import gettext

from portal.exceptions import Conflict


def stale_fields(current: Mapping, expected: Mapping, wanted: Mapping) -> list[str]:
    """The fields of ``expected`` (field → the value the page showed) whose current
    value is neither what the page showed nor what the edit wants: someone else
    changed them since the page was rendered."""
    return [
        field
        for field, shown in expected.items()
        if current[field] != shown and current[field] != wanted[field]
    ]


def refuse_stale(name: str, current: Mapping, fields: list[str]) -> None:
    """Raise the ``Conflict`` of an edit of ``name`` whose ``fields`` were changed by
    someone else (each field's error says its value now); nothing when there are none."""
    if not fields:
        return
    raise Conflict(
        gettext(
            "%(name)s was changed by someone else since you opened this page; reload to "
            "see the change. Nothing was saved."
        )
        % {"name": name},
        errors={
            field: [
                gettext("Changed by someone else since you opened this page: now %(value)s.")
                % {"value": _shown(current[field])}
            ]
            for field in fields
        },
    )


def _shown(value) -> str:
    if isinstance(value, Model):
        return getattr(value, "name", str(value))
    return str(value)
