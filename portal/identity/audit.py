"""Second factors in the audit log: enrolled, removed, recovery codes regenerated, and
wrong codes (each one; the rate limit refuses more after ``ISOTOPE_MFA_FAILURE_LIMIT``)."""

from __future__ import annotations

from allauth.account.internal.flows.login import record_authentication
from allauth.mfa import signals
from django.dispatch import receiver

from tenants import services
from tenants.choices import AuditOutcome


def _record(action: str, user, authenticator, outcome: str = AuditOutcome.SUCCESS) -> None:
    services.audit_record(
        actor=user,
        action=action,
        target=f"user/{user.get_username()}",
        outcome=outcome,
        detail={"type": getattr(authenticator, "type", "")},
    )


@receiver(signals.authenticator_added, dispatch_uid="portal.identity.mfa_added")
def on_added(sender, request, user, authenticator, **kwargs) -> None:
    _record("auth.mfa.enable", user, authenticator)
    # Enrolling proved the second factor (a code was typed): this session counts as
    # signed in with it for the 2FA requirements (middleware).
    record_authentication(request, user, "mfa", type=authenticator.type, enrolled=True)


@receiver(signals.authenticator_removed, dispatch_uid="portal.identity.mfa_removed")
def on_removed(sender, request, user, authenticator, **kwargs) -> None:
    _record("auth.mfa.disable", user, authenticator)


@receiver(signals.authenticator_reset, dispatch_uid="portal.identity.mfa_reset")
def on_reset(sender, request, user, authenticator, **kwargs) -> None:
    _record("auth.mfa.reset", user, authenticator)


@receiver(signals.authentication_failed, dispatch_uid="portal.identity.mfa_failed")
def on_failed(sender, request, user, authenticator, **kwargs) -> None:
    _record("auth.mfa.failed", user, authenticator, AuditOutcome.DENIED)
