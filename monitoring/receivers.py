"""Signal receivers: tell live sockets when a user's access changes or ends; count Celery
task runs and durations for ``/metrics``."""

from __future__ import annotations

import logging

from celery.signals import task_postrun, task_prerun
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from monitoring import prometheus, services
from portal.signals import membership_changed, user_signed_out

logger = logging.getLogger(__name__)


@receiver(membership_changed, dispatch_uid="monitoring.membership_changed")
def on_membership_changed(sender, tenant, user, **kwargs) -> None:
    """Sockets of ``user`` re-check their subscriptions to ``tenant`` and drop the ones
    no longer allowed (sent after commit by ``tenants.services``)."""
    try:
        services.access_recheck(user_id=user.pk, tenant_slug=tenant.slug)
    except Exception:  # noqa: BLE001 - a dead channel layer must not break membership writes
        logger.exception("could not ask %s's sockets to re-check access", user)


@receiver(user_logged_out, dispatch_uid="monitoring.user_logged_out")
def on_logged_out(sender, request, user, **kwargs) -> None:
    """Close the sockets opened with the session that just signed out."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is None or not session_key:
        return
    try:
        services.sessions_close(user_id=user.pk, session_key=session_key)
    except Exception:  # noqa: BLE001 - signing out must work without the channel layer
        logger.exception("could not close %s's sockets", user)


@receiver(user_signed_out, dispatch_uid="monitoring.user_signed_out")
def on_user_signed_out(sender, user_id, keep_session_key: str = "", **kwargs) -> None:
    """Close every socket of a user who was deactivated or deleted, or whose password
    staff set (but those of ``keep_session_key``, a session that stays signed in)."""
    try:
        services.sessions_close(user_id=user_id, keep_session_key=keep_session_key)
    except Exception:  # noqa: BLE001 - the account change stands without the channel layer
        logger.exception("could not close the sockets of user %s", user_id)


@task_prerun.connect(dispatch_uid="monitoring.task_prerun")
def on_task_prerun(sender=None, task_id=None, **kwargs) -> None:
    """Start timing a task run in this worker (for ``/metrics``)."""
    if task_id:
        prometheus.task_started(task_id)


@task_postrun.connect(dispatch_uid="monitoring.task_postrun")
def on_task_postrun(sender=None, task_id=None, state=None, **kwargs) -> None:
    """Count the run by its final state and add its duration (Redis, shared by workers)."""
    if task_id and sender is not None:
        prometheus.task_record(task_id, sender.name, state or "UNKNOWN")
