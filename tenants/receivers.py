"""Signal receivers of the tenants app: sign-in lockouts go to the audit log."""

from __future__ import annotations

import logging

from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver

from tenants import services

logger = logging.getLogger(__name__)


@receiver(user_locked_out, dispatch_uid="tenants.user_locked_out")
def on_user_locked_out(sender, request, username, ip_address, **kwargs) -> None:
    """Audit a sign-in lockout once: django-axes signals every refused attempt while it
    lasts, but only the failure that reaches the limit starts one."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is not None and failures != settings.AXES_FAILURE_LIMIT:
        return
    services.login_lockout_record(
        username=username or "",
        ip=ip_address,
        path=getattr(request, "path", ""),
        failures=failures or settings.AXES_FAILURE_LIMIT,
    )
