"""Console pages: ``/t/<tenant>/vms/<name>/console/`` and its read-only serial log.

Thin: the page issues a ticket for its own first connection (the script asks the API for
fresh ones to reconnect) and says plainly when there is no console.
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from compute import selectors
from compute.services import console as console_services
from portal.api.throttles import ConsoleTicketThrottle
from portal.exceptions import NotFound
from portal.web import tenant_view


def _vm(request, tenant, name: str):
    try:
        return selectors.vm_get(request.user, tenant, name, "vm.console")
    except NotFound as error:
        raise Http404(error.message) from None


@tenant_view("vm.console")
@require_GET
@never_cache
def vm_console(request, tenant, name: str):
    vm = _vm(request, tenant, name)
    unavailable = console_services.console_unavailable_reason(vm)
    first = None
    throttle = ConsoleTicketThrottle()
    wait = None
    if not unavailable and not throttle.allow_request(request, None):
        wait = int(throttle.wait())
        unavailable = f"Too many console connections were opened; try again in {wait} seconds."
    if not unavailable:
        if not request.session.session_key:
            request.session.save()
        issued = console_services.console_ticket_issue(
            actor=request.user, vm=vm, session_key=request.session.session_key
        )
        first = {"ticket": issued.ticket, "viewOnly": issued.view_only}
    response = render(
        request,
        "compute/vm_console.html",
        {
            "tenant": tenant,
            "vm": vm,
            "unavailable": unavailable,
            "view_only": console_services.console_view_only(request.user, vm),
            "first_ticket": first,
            "has_serial": bool(vm.host and vm.host.can("serial_log")),
        },
        status=429 if wait else 200,
    )
    if wait:
        response["Retry-After"] = str(wait)
    return response


@tenant_view("vm.console")
@require_GET
@never_cache
def vm_console_serial(request, tenant, name: str):
    """The tail of the serial console log as plain text (read-only)."""
    vm = _vm(request, tenant, name)
    text = console_services.console_serial_tail(vm=vm)
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response
