"""``POST /api/v1/tenants/<t>/virtualmachines/<name>/console/``: a console ticket.

Thin: the tenant and VM are resolved as for every VM endpoint (another tenant's VM is
404), ``compute.services.console`` decides and issues.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from compute import selectors
from compute.api import PROBLEM_RESPONSE
from compute.services import console as console_services
from portal.api.throttles import ConsoleTicketThrottle
from tenants.api import TenantScopedView


class ConsoleTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(
        help_text="Single use, valid until `expires` (≤ 30 s). Present it as the websocket "
        "subprotocol `isotope-ticket.<ticket>` next to `binary`; never put it in a URL."
    )
    websocketPath = serializers.CharField(help_text="Where to open the websocket.")  # noqa: N815
    expires = serializers.DateTimeField()
    viewOnly = serializers.BooleanField(  # noqa: N815
        help_text="True for viewers: keyboard and mouse input is dropped by the proxy."
    )


class VMConsoleView(TenantScopedView):
    serializer_class = ConsoleTicketSerializer
    throttle_classes = [ConsoleTicketThrottle]

    @extend_schema(
        operation_id="virtualmachines_console",
        summary="Issue a single-use console ticket for the VM's VNC console",
        request=None,
        responses={
            201: ConsoleTicketSerializer,
            403: PROBLEM_RESPONSE,
            404: PROBLEM_RESPONSE,
            409: PROBLEM_RESPONSE,
            429: PROBLEM_RESPONSE,
        },
    )
    def post(self, request, tenant, name):
        obj = self.tenant("vm.console")
        vm = selectors.vm_get(request.user, obj, name, "vm.console")
        session = getattr(request._request, "session", None)
        # Only a session-authenticated request binds the ticket to its browser session.
        session_key = ""
        if session is not None and request.auth is None:
            session_key = session.session_key or ""
        issued = console_services.console_ticket_issue(
            actor=request.user, vm=vm, session_key=session_key
        )
        body = {
            "ticket": issued.ticket,
            "websocketPath": issued.websocket_path,
            "expires": issued.expires.isoformat().replace("+00:00", "Z"),
            "viewOnly": issued.view_only,
        }
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})
