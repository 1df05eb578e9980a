"""Quota requests: a tenant admin asks for more, platform staff decide.

- :func:`quota_request_create` (tenant admins, ``quota.request``): which resources, how
  much more, why. One pending request per tenant. A tenant with an auto-approval rule
  gets small requests approved at once.
- :func:`quota_request_decide` (platform staff): approve (all or part of it) or reject
  with a reason. An approval raises the limits through ``tenants.services.quota_set``
  (audited ``quota.set``), in the same transaction as the decision.

Requests and decisions are events of kind ``quota-request`` (``QuotaRequested``,
``QuotaRequestApproved``, ``QuotaRequestPartiallyApproved``, ``QuotaRequestRejected``),
audited (``quota_request.create``/``.approve``/``.reject``), pushed live to the tenant's
stream (``resource`` ``quota-request/qr-<id>``) and the requester is notified.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring.choices import EventType, NotificationKind, NotificationLevel
from portal.exceptions import Conflict, NotFound, PermissionDenied, ValidationError
from tenants.models import QUOTA_LABELS, QUOTA_RESOURCES, Quota, Tenant
from tenants.services import audit_record, authorize, quota_set
from usage import texts
from usage.choices import QuotaRequestState
from usage.models import QuotaAutoApproval, QuotaRequest

logger = logging.getLogger(__name__)

REASON_MAX = 1000
# No single request may ask for more than this much of one resource.
INCREASE_MAX = 10**6


def _amounts(raw, *, field: str, allow_zero: bool) -> dict[str, Decimal | int]:
    """Validate ``{resource: amount}``: known resources, whole numbers (CPU: up to three
    decimals), not negative; at least one above zero."""
    if not isinstance(raw, dict):
        raise ValidationError("Say how much more of each resource.", errors={field: ["A map."]})
    clean: dict[str, Decimal | int] = {}
    errors: dict[str, list[str]] = {}
    for resource, value in raw.items():
        key = f"{field}.{resource}"
        if resource not in QUOTA_RESOURCES:
            errors[key] = ["Unknown quota resource."]
            continue
        if value in (None, ""):
            continue
        try:
            number = Decimal(str(value).strip())
            if not number.is_finite():
                raise InvalidOperation
        except (InvalidOperation, ValueError, TypeError):
            errors[key] = ["Enter a number."]
            continue
        if resource != "cpu" and number != number.to_integral_value():
            errors[key] = ["Enter a whole number."]
        elif resource == "cpu" and number != number.quantize(Decimal("0.001")):
            errors[key] = ["At most three decimals (millicores)."]
        elif number < 0:
            errors[key] = ["Must be zero or more."]
        elif number > INCREASE_MAX:
            errors[key] = [f"At most {INCREASE_MAX} at once."]
        elif number or allow_zero:
            clean[resource] = number if resource == "cpu" else int(number)
    if errors:
        raise ValidationError("Invalid quota amounts.", errors=errors)
    if not any(clean.values()):
        raise ValidationError(
            "Ask for more of at least one resource.",
            errors={field: ["Ask for more of at least one resource."]},
        )
    return clean


def _printable(reason: str) -> None:
    """Text people read: line breaks and tabs, but no other control characters (a NUL
    would not even fit in a PostgreSQL text column)."""
    if any(ord(c) < 32 and c not in "\n\r\t" for c in reason):
        raise ValidationError(
            "The reason has control characters.", errors={"reason": ["Plain text only."]}
        )


def _json_amounts(amounts: dict) -> dict:
    """Amounts as JSON keeps them: CPU as a string (exact), counts as ints."""
    return {r: (str(v) if isinstance(v, Decimal) else int(v)) for r, v in amounts.items() if v}


def request_amount(value) -> Decimal | int:
    """An amount read back from a request's JSON."""
    number = Decimal(str(value))
    return int(number) if number == number.to_integral_value() else number


def describe_amounts(amounts: dict) -> str:
    """``+2 VMs, +4 cores`` for messages."""
    return ", ".join(
        f"+{request_amount(v)} {QUOTA_RESOURCES[r]}"
        for r, v in amounts.items()
        if r in QUOTA_RESOURCES
    )


def quota_request_create(*, actor, tenant: Tenant, increase: dict, reason: str) -> QuotaRequest:
    """Ask for more quota for ``tenant`` (tenant admins). Refused (``Conflict``) while
    another request of the tenant is pending; approved at once when the tenant's
    auto-approval rule allows it."""
    # Outside the transaction: a refusal's audit row must survive the refusal.
    authorize(actor=actor, tenant=tenant, permission="quota.request", target="quota-request")
    amounts = _amounts(increase, field="increase", allow_zero=False)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why you need it.", errors={"reason": ["Say why you need it."]})
    _printable(reason)
    if len(reason) > REASON_MAX:
        raise ValidationError("Reason too long.", errors={"reason": [f"At most {REASON_MAX}."]})
    with transaction.atomic():
        return _create(actor, tenant, amounts, reason)


def _create(actor, tenant: Tenant, amounts: dict, reason: str) -> QuotaRequest:
    quota = Quota.objects.select_for_update().get(tenant=tenant)
    user = actor if getattr(actor, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            request = QuotaRequest.objects.create(
                tenant=tenant,
                requester=user,
                requester_name=user.get_username() if user else "system",
                increase=_json_amounts(amounts),
                reason=reason,
                limits_before={r: str(quota.limit(r)) for r in QUOTA_RESOURCES},
            )
    except IntegrityError:
        raise Conflict(
            "A quota request of this tenant is pending already: wait for its decision.",
            errors={"increase": ["A request is pending already."]},
        ) from None
    audit_record(
        actor=actor,
        action="quota_request.create",
        tenant=tenant,
        target=f"quota-request/{request.name}",
        detail={"increase": request.increase, "reason": reason},
    )
    _event(
        request,
        "QuotaRequested",
        texts.REQUESTED
        % {
            "requester": request.requester_name,
            "amounts": describe_amounts(request.increase),
            "reason": reason,
        },
    )
    _publish(request)
    rule = _auto_rule(request, quota)
    if rule is not None:
        request = _decide(
            request,
            actor=None,
            approve=True,
            granted=dict(amounts),
            reason=texts.AUTO_APPROVED
            % {"percent": f"{rule.max_percent} %", "days": rule.period_days},
            auto=True,
        )
    return request


def _auto_rule(request: QuotaRequest, quota: Quota) -> QuotaAutoApproval | None:
    """The tenant's auto-approval rule if it covers this request, else None."""
    rule = QuotaAutoApproval.objects.filter(tenant_id=request.tenant_id, enabled=True).first()
    if rule is None:
        return None
    since = timezone.now() - timedelta(days=rule.period_days)
    if QuotaRequest.objects.filter(
        tenant_id=request.tenant_id, auto_approved=True, decided__gte=since
    ).exists():
        return None
    for resource, amount in request.increase.items():
        allowed = Decimal(quota.limit(resource)) * rule.max_percent / 100
        if request_amount(amount) > allowed:
            return None
    return rule


def _is_staff(actor) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and actor.is_active and actor.is_staff)


def quota_request_decide(
    *,
    actor,
    request: QuotaRequest,
    approve: bool,
    granted: dict | None = None,
    reason: str = "",
) -> QuotaRequest:
    """Approve (``granted``: how much of each asked-for resource, at most what was asked;
    all of it by default) or reject (a ``reason`` is required) a pending request.
    Platform staff only; a request decided already is a ``Conflict``."""
    if not _is_staff(actor):
        audit_record(
            actor=actor,
            action="quota_request.approve" if approve else "quota_request.reject",
            tenant=request.tenant,
            target=f"quota-request/{request.name}",
            outcome="denied",
        )
        raise PermissionDenied("Only platform staff decide quota requests.")
    with transaction.atomic():
        return _decide_locked(actor, request, approve, granted, reason)


def _decide_locked(actor, request: QuotaRequest, approve: bool, granted, reason: str):
    locked = QuotaRequest.objects.select_for_update().filter(pk=request.pk).first()
    if locked is None:
        raise NotFound("No such quota request.")
    if not locked.pending:
        raise Conflict(
            f"This request was {locked.get_state_display().lower()} already.",
            errors={"state": [locked.state]},
        )
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise ValidationError("Reason too long.", errors={"reason": [f"At most {REASON_MAX}."]})
    _printable(reason)
    amounts: dict = {}
    if approve:
        asked = {r: request_amount(v) for r, v in locked.increase.items()}
        amounts = asked if granted is None else _amounts(granted, field="granted", allow_zero=True)
        errors = {
            f"granted.{r}": [f"At most what was asked ({asked.get(r, 0)})."]
            for r, v in amounts.items()
            if v > asked.get(r, 0)
        }
        if errors:
            raise ValidationError("Grant at most what was asked.", errors=errors)
    elif not reason:
        raise ValidationError(
            "Say why the request is rejected.", errors={"reason": ["Say why it is rejected."]}
        )
    return _decide(locked, actor=actor, approve=approve, granted=amounts, reason=reason)


def _decide(
    request: QuotaRequest, *, actor, approve: bool, granted: dict, reason: str, auto: bool = False
) -> QuotaRequest:
    tenant = request.tenant
    quota = Quota.objects.select_for_update().get(tenant=tenant)
    before = {r: str(quota.limit(r)) for r in QUOTA_RESOURCES}
    after = before
    if approve:
        limits = {r: quota.limit(r) + Decimal(str(v)) for r, v in granted.items() if v}
        change = quota_set(actor=actor, tenant=tenant, limits=limits)
        after = {r: str(change.quota.limit(r)) for r in QUOTA_RESOURCES}
        partial = any(
            request_amount(granted.get(r, 0)) < request_amount(v)
            for r, v in request.increase.items()
        )
        state = QuotaRequestState.PARTIALLY_APPROVED if partial else QuotaRequestState.APPROVED
    else:
        state = QuotaRequestState.REJECTED
    user = actor if getattr(actor, "is_authenticated", False) else None
    request.state = state
    request.granted = _json_amounts(granted) if approve else {}
    request.limits_before = before
    request.limits_after = after
    request.decided = timezone.now()
    request.decided_by = user
    request.decided_by_name = user.get_username() if user else "auto-approval"
    request.decision_reason = reason
    request.auto_approved = auto
    request.save()
    audit_record(
        actor=actor,
        action="quota_request.approve" if approve else "quota_request.reject",
        tenant=tenant,
        target=f"quota-request/{request.name}",
        detail={
            "state": state,
            "asked": request.increase,
            "granted": request.granted,
            "reason": reason,
            "auto": auto,
        },
    )
    # (event reason, message format, the same with the decider's reason)
    words = {
        QuotaRequestState.APPROVED: (
            "QuotaRequestApproved",
            texts.APPROVED,
            texts.APPROVED_BECAUSE,
        ),
        QuotaRequestState.PARTIALLY_APPROVED: (
            "QuotaRequestPartiallyApproved",
            texts.PARTLY_APPROVED,
            texts.PARTLY_APPROVED_BECAUSE,
        ),
        QuotaRequestState.REJECTED: (
            "QuotaRequestRejected",
            texts.REJECTED,
            texts.REJECTED_BECAUSE,
        ),
    }
    event_reason, plain, because = words[state]
    what = describe_amounts(request.granted) if approve else describe_amounts(request.increase)
    message = (because if reason else plain) % {
        "request": request.name,
        "actor": request.decided_by_name,
        "amounts": what,
        "reason": reason,
    }
    _event(request, event_reason, message, warning=state == QuotaRequestState.REJECTED)
    _publish(request)
    _notify(request, message)
    return request


def _event(request: QuotaRequest, reason: str, message: str, *, warning: bool = False) -> None:
    from monitoring.services import event_publish

    event_publish(
        tenant=request.tenant,
        kind="quota-request",
        name=request.name,
        uid=str(request.uid),
        reason=reason,
        message=message,
        type=EventType.WARNING if warning else EventType.NORMAL,
    )


# A decided request's notification title.
TITLES = {
    QuotaRequestState.APPROVED: texts.APPROVED_TITLE,
    QuotaRequestState.PARTIALLY_APPROVED: texts.PARTLY_APPROVED_TITLE,
    QuotaRequestState.REJECTED: texts.REJECTED_TITLE,
}


def _notify(request: QuotaRequest, message: str) -> None:
    from monitoring.notifications import notify

    level = {
        QuotaRequestState.APPROVED: NotificationLevel.SUCCESS,
        QuotaRequestState.PARTIALLY_APPROVED: NotificationLevel.WARNING,
        QuotaRequestState.REJECTED: NotificationLevel.DANGER,
    }[request.state]
    notify(
        users=[request.requester] if request.requester_id else [],
        kind=NotificationKind.QUOTA_REQUEST,
        title=TITLES[request.state] % {"tenant": request.tenant.slug},
        message=message,
        tenant=request.tenant,
        link=f"/t/{request.tenant.slug}/",
        level=level,
    )


def request_state(request: QuotaRequest) -> dict:
    """What live pages need to draw a request (its row on the overview)."""
    return {
        "uid": str(request.uid),
        "resourceVersion": str(request.resource_version),
        "name": request.name,
        "state": request.state,
        "stateLabel": request.get_state_display(),
        "increase": request.increase,
        "increaseText": describe_amounts(request.increase),
        "granted": request.granted,
        "grantedText": describe_amounts(request.granted),
        "reason": request.reason,
        "requester": request.requester_name,
        "decisionReason": request.decision_reason,
        "decidedBy": request.decided_by_name,
        "created": request.created.isoformat().replace("+00:00", "Z"),
        "decided": request.decided.isoformat().replace("+00:00", "Z") if request.decided else None,
    }


def _publish(request: QuotaRequest) -> None:
    from monitoring.services import resource_publish

    resource_publish(
        tenant=request.tenant, kind="quota-request", name=request.name, data=request_state(request)
    )


def quota_state(tenant: Tenant) -> dict:
    """The quota bars' figures, for live overview pages (``resource`` ``quota/quota``)."""
    from tenants.selectors import quota_usage

    quota = Quota.objects.get(tenant=tenant)
    return {
        # The snapshot keeps the newest of out-of-order publishes (monitoring.live).
        "uid": str(quota.uid),
        "resourceVersion": str(quota.resource_version),
        "resources": {
            u.resource: {
                "used": str(u.used),
                "limit": str(u.limit),
                "percent": u.percent,
                "level": u.level,
                "over": u.over,
                "unit": u.unit,
                "label": str(QUOTA_LABELS[u.resource]),
            }
            for u in quota_usage(tenant)
        },
    }


def quota_publish(*, tenant: Tenant) -> None:
    """Push the tenant's quota figures to its stream (after a limit change)."""
    from monitoring.services import resource_publish

    resource_publish(tenant=tenant, kind="quota", name="quota", data=quota_state(tenant))
