"""Edits made on a page that may be stale: the compare-and-set the portal's forms rely on.

A form shows an object's settings as they were when the page was rendered; by the time
it is sent, someone else (another user, the API) may have changed the object. The form
therefore sends only what the person changed, with the value each field had on the
page, and the service, holding the row's lock, applies it only where that value is
still the current one (or where the object is already as wanted). A field changed on
both sides refuses the whole edit: nothing is saved and the person reloads to see the
other change. The fields the person left alone are not sent, so they cannot revert
someone else's change. A label map is edited key by key the same way
(:func:`labels_merge`).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Model
from django.utils.translation import gettext

from compute.labels import label_map_errors
from portal.exceptions import Conflict, ValidationError


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


def labels_merge(
    current: Mapping[str, str], shown: Mapping[str, str], edited: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Apply to the ``current`` labels what was edited on a page that showed ``shown``:
    the keys ``edited`` adds, changes or removes relative to ``shown``; every other key
    stays as it is now. Returns the merged map and the keys edited on the page that
    someone else changed meanwhile (to another value than the edit's)."""
    merged = dict(current)
    stale = []
    for key in sorted(set(shown) | set(edited)):
        if shown.get(key) == edited.get(key):
            continue  # left alone on the page
        if current.get(key) == edited.get(key):
            continue  # already as wanted
        if current.get(key) != shown.get(key):
            stale.append(key)
        elif key in edited:
            merged[key] = edited[key]
        else:
            merged.pop(key, None)
    # In the order typed on the page (as a whole-map write keeps it), then the others.
    ordered = {key: merged[key] for key in edited if key in merged}
    return ordered | {key: value for key, value in merged.items() if key not in ordered}, stale


def refuse_stale_labels(name: str, current: Mapping[str, str], keys: list[str]) -> None:
    """Raise the ``Conflict`` of a label edit of ``name`` whose ``keys`` someone else
    changed since the page was rendered; nothing when there are none."""
    if not keys:
        return
    now = ", ".join(
        f"{key}={current[key]}" if key in current else gettext("%(key)s (removed)") % {"key": key}
        for key in keys
    )
    raise Conflict(
        gettext(
            "The labels of %(name)s were changed by someone else since you opened this "
            "page (now %(labels)s); reload to see the change. Nothing was saved."
        )
        % {"name": name, "labels": now}
    )


def labels_edit(
    name: str, current: Mapping[str, str], shown: Mapping[str, str], edited: Mapping[str, str]
) -> dict[str, str]:
    """The labels of ``name`` (``current``, read under its row lock) with the edit of
    ``shown`` into ``edited`` applied (:func:`labels_merge`): the ``Conflict`` of a key
    someone else changed since, or a ``ValidationError`` when the merged map is not
    valid (over the limit)."""
    merged, stale = labels_merge(current, shown, edited)
    refuse_stale_labels(name, current, stale)
    if errors := label_map_errors(merged):
        raise ValidationError(gettext("Invalid labels."), errors={"labels": errors})
    return merged
