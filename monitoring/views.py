"""The tenant's event timeline."""

from __future__ import annotations

from django.shortcuts import render

from portal.web import tenant_view


@tenant_view("event.view")
def event_list(request, tenant):
    return render(request, "monitoring/event_list.html", {"tenant": tenant})
