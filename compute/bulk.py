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
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from portal.exceptions import ApplicationError, Conflict, PermissionDenied
from tenants import services as tenant_services

# The most objects one request acts on (a list page's size).
BULK_MAX = 100
# The nouns the lists pass, as the page shows them (the audit target keeps the English).
NOUNS = {"VM": _("VM"), "workload": _("workload")}


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
    shown = NOUNS.get(noun, noun)
    context = {"tenant": tenant, "back": back, "noun": shown}
    error = None
    if action not in actions:
        error = gettext("Unknown bulk action %(action)s: choose one of %(actions)s.") % {
            "action": repr(action),
            "actions": ", ".join(actions),
        }
    elif not names:
        error = gettext("Tick the %(noun)ss to act on first.") % {"noun": shown}
    elif len(names) > BULK_MAX:
        error = gettext("At most %(max)s %(noun)ss at once.") % {"max": BULK_MAX, "noun": shown}
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
            results.append(
                (
                    name,
                    "error",
                    gettext("No %(noun)s named %(name)s in this tenant.")
                    % {"noun": shown, "name": name},
                )
            )
            continue
        try:
            run(obj, action)
        except Conflict as failure:
            results.append((name, "skipped", failure.message))
        except ApplicationError as failure:
            results.append((name, "error", failure.message))
        else:
            results.append((name, "ok", gettext("%(action)s requested.") % {"action": rule.label}))
    context["results"] = results
    context["succeeded"] = sum(1 for _, outcome, _ in results if outcome == "ok")
    return render(request, "compute/bulk.html", context)
