"""Bulk actions on a list page (VMs, workloads): the ticked objects are confirmed once,
then each goes through its own service call and every result is shown.

Views stay thin: they say which actions a list offers (name → permission and label),
which objects the user may see, and which service runs one action on one object. The
permission is checked (and a refusal audited) before anything is shown; the service
checks it again per object, as for a single action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import QuerySet
from django.shortcuts import render

from portal.exceptions import ApplicationError, Conflict, PermissionDenied
from tenants import services as tenant_services

# The most objects one request acts on (a list page's size).
BULK_MAX = 100


@dataclass(frozen=True)
class BulkAction:
    permission: str
    label: str
    icon: str
    tone: str


def bulk_view(
    request,
    tenant,
    *,
    actions: dict[str, BulkAction],
    visible: QuerySet,
    run: Callable[[object, str], object],
    noun: str,
    back: str,
):
    """Answer a bulk POST: ``action`` and the ticked ``names`` (``obj`` fields), a
    confirmation page first, then each object's result (``confirm=yes``)."""
    action = request.POST.get("action", "")
    names = list(dict.fromkeys(request.POST.getlist("obj")))
    context = {"tenant": tenant, "back": back, "noun": noun}
    error = None
    if action not in actions:
        error = f"Unknown bulk action {action!r}: choose one of {', '.join(actions)}."
    elif not names:
        error = f"Tick the {noun}s to act on first."
    elif len(names) > BULK_MAX:
        error = f"At most {BULK_MAX} {noun}s at once."
    if error:
        messages.error(request, error)
        return render(request, "compute/bulk.html", context, status=400)
    rule = actions[action]
    try:
        tenant_services.authorize(
            actor=request.user,
            tenant=tenant,
            permission=rule.permission,
            target=f"{noun.lower()}/{','.join(names)}"[:200],
        )
    except PermissionDenied as refusal:
        raise DjangoPermissionDenied(refusal.message) from None
    found = {obj.name: obj for obj in visible.filter(name__in=names)}
    context |= {
        "action": action,
        "rule": rule,
        "items": [(name, found.get(name)) for name in names],
        "count": len(names),
    }
    if request.POST.get("confirm") != "yes":
        return render(request, "compute/bulk.html", context)
    results = []
    for name in names:
        obj = found.get(name)
        if obj is None:
            results.append((name, "error", f"No {noun} named {name} in this tenant."))
            continue
        try:
            run(obj, action)
        except Conflict as failure:
            results.append((name, "skipped", failure.message))
        except ApplicationError as failure:
            results.append((name, "error", failure.message))
        else:
            results.append((name, "ok", f"{rule.label} requested."))
    context["results"] = results
    context["succeeded"] = sum(1 for _, outcome, _ in results if outcome == "ok")
    return render(request, "compute/bulk.html", context)
