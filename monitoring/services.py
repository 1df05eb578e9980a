"""Writes for monitoring: publishing events and resource states, tenant webhooks.

Publishing is the only way anything reaches websocket subscribers or webhooks:

- :func:`event_publish` records (or folds) an event and, once the caller's transaction
  commits, sends it to the tenant's stream and the object's stream and enqueues one
  webhook delivery per active webhook of the tenant.
- :func:`resource_publish` pushes a resource's current state (for live badges) to the
  same streams without writing an event; :func:`resource_forget` says it is gone.
- :func:`metrics_publish` pushes new metric points of VMs (to each VM's metrics stream)
  and tenant totals (to the tenant stream); nothing is written.

Both return before anything is sent: sending happens in ``transaction.on_commit`` and
never raises into the caller (failures are logged). When the caller's transaction rolls
back, nothing is sent and the event row is rolled back too: publish a failure that
makes the caller roll back (e.g. a refused quota) after leaving the atomic block.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from monitoring import crypto, delivery, live
from monitoring.choices import DeliveryStatus, EventType, LiveMessageType
from monitoring.formats import event_data
from monitoring.groups import metrics_group, object_group, tenant_group, user_group
from monitoring.models import Event, Webhook, WebhookDelivery
from portal import sql
from portal.exceptions import Conflict, NotFound, PermissionDenied, ValidationError
from tenants import selectors as tenant_selectors
from tenants.models import Tenant
from tenants.services import audit_record

logger = logging.getLogger(__name__)

REASON = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")
MESSAGE_MAX = 1024  # like Kubernetes: longer messages are cut, not refused
SOURCE_MAX = 64
NAME_MAX = 253
WEBHOOKS_PER_TENANT = 10
WEBHOOK_URL_MAX = 500
SIGNATURE_HEADER = "X-Isotope-Signature"
TIMESTAMP_HEADER = "X-Isotope-Timestamp"
DELIVERY_HEADER = "X-Isotope-Delivery"


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- Validation ------------------------------------------------------------------------
def _check_object(kind: str, name: str) -> None:
    errors: dict[str, list[str]] = {}
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        errors["kind"] = ["Lowercase letters, digits and hyphens, e.g. vm or workload."]
    if not isinstance(name, str) or not name or len(name) > NAME_MAX or not name.isprintable():
        errors["name"] = [f"1 to {NAME_MAX} printable characters."]
    if errors:
        raise ValidationError("Invalid object reference.", errors=errors)


def _check_event(reason: str, type: str, source: str, uid: str) -> None:
    errors: dict[str, list[str]] = {}
    if not isinstance(reason, str) or not REASON.fullmatch(reason):
        errors["reason"] = ["CamelCase, starting with a capital, e.g. FailedScheduling."]
    if type not in EventType.values:
        errors["type"] = [f"One of {', '.join(EventType.values)}."]
    if not isinstance(source, str) or not source or len(source) > SOURCE_MAX:
        errors["source"] = [f"1 to {SOURCE_MAX} characters."]
    if not isinstance(uid, str) or len(uid) > 64:
        errors["uid"] = ["At most 64 characters."]
    if errors:
        raise ValidationError("Invalid event.", errors=errors)


# --- Events ----------------------------------------------------------------------------
def event_publish(
    *,
    tenant: Tenant,
    kind: str,
    name: str,
    reason: str,
    message: str,
    type: str = EventType.NORMAL,
    source: str = "isotope",
    uid: str = "",
    new_object: bool = False,
) -> Event:
    """Record that ``reason`` happened to ``kind``/``name`` of ``tenant``; push it live.

    A repeat of the same (tenant, kind, name, type, reason, message) within
    ``ISOTOPE_EVENT_FOLD_SECONDS`` (default 600) folds into the existing row: ``count``
    + 1 and ``last_seen`` = now. ``new_object``: the object (``uid``) is made in the
    caller's transaction and this is its first event, which folds into none (not into
    the event of an earlier object of the same name: what happens to an object is
    counted on its own, as Kubernetes' event correlation keys by the object's uid).

    After the caller's transaction commits, the event goes to ``tenant_group(slug)``
    and ``object_group(slug, kind, name)`` as a websocket message ``{"type": "event",
    "stream", "seq", "data": event_data(event)}``, and one webhook delivery per active
    webhook is enqueued on the ``monitoring`` queue.

    A new event is written in the caller's ``portal.sql.batch`` when it has one (no key
    until the batch is written; its webhook deliveries are made then).

    Raises ``ValidationError`` for a malformed kind, name, reason, type or source.
    """
    _check_object(kind, name)
    _check_event(reason, type, source, uid)
    message = str(message or "")
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 1] + "…"
    now = timezone.now()
    window = timedelta(seconds=_setting("ISOTOPE_EVENT_FOLD_SECONDS", 600))
    # Inside a caller's transaction no savepoint of its own (two statements fewer on
    # every change): nothing here is an error the caller could recover from.
    with transaction.atomic(savepoint=False):
        event = None
        groups = [tenant_group(tenant.slug), object_group(tenant.slug, kind, name)]
        if not new_object:
            # The repeat to fold into, locked; written out (portal.sql): every event
            # of every object looks.
            event = sql.first(
                Event,
                "tenant_id = %s AND kind = %s AND name = %s AND type = %s AND reason = %s "
                "AND message = %s AND last_seen >= %s",
                [tenant.pk, kind, name, type, reason, message, sql.moment(now - window)],
                order_by="last_seen DESC, id DESC",
                for_update=True,
            )
        if event is not None:
            updates = {"count": F("count") + 1, "last_seen": max(now, event.last_seen)}
            if uid and not event.object_uid:
                updates["object_uid"] = uid
            Event.objects.filter(pk=event.pk).update(**updates)
            event.refresh_from_db()
            data = event_data(event, tenant_slug=tenant.slug)
            delivery_ids = _deliveries_create(tenant, event, data)
            _live_on_commit((groups, LiveMessageType.EVENT, data), deliveries=delivery_ids)
            return event
        event = Event(
            tenant=tenant,
            kind=kind,
            name=name,
            object_uid=uid,
            type=type,
            reason=reason,
            message=message,
            source=source,
            first_seen=now,
            last_seen=now,
        )
        # A new event (not a fold of a repeat) may be worth telling people about.
        from monitoring.notifications import notify_for_event

        notify_for_event(tenant=tenant, event=event)
        data = event_data(event, tenant_slug=tenant.slug)
        live_batch = _live_on_commit((groups, LiveMessageType.EVENT, data))

        def written(hooks: list[int] | None) -> None:
            # Its webhooks' deliveries, enqueued after the live push (the batch's hook
            # runs at commit, after the row is written).
            live_batch.deliveries.extend(_deliveries_create(tenant, event, data, hooks))

        _event_insert(tenant, event, then=written)
    return event


# The tenant's active webhooks (written out, portal.sql: every event asks, and most
# tenants have none). Qualified: inside the event's RETURNING, a bare column name could
# also be one of the event's.
_HOOKS = (
    f"SELECT w.id FROM {Webhook._meta.db_table} w "  # noqa: S608
    "WHERE w.tenant_id = %s AND w.active = %s"
)


def _event_insert(tenant: Tenant, event: Event, *, then) -> None:
    """Write a new event, in the caller's batch when it has one (``portal.sql``), and
    call ``then`` with the ids of the tenant's active webhooks once it is written: on
    PostgreSQL read in the same statement (one round trip fewer on every new event),
    elsewhere None (``_deliveries_create`` reads them)."""
    if transaction.get_connection().vendor != "postgresql":
        sql.insert(event)
        then(None)
        return
    sql.insert_later(event, also=(f"ARRAY({_HOOKS} ORDER BY w.id)", [tenant.pk, True]), then=then)


def _deliveries_create(
    tenant: Tenant, event: Event, data: dict, hooks: list[int] | None = None
) -> list[int]:
    """One pending delivery per active webhook (``hooks``, read here when None), in
    the event's transaction."""
    if hooks is None:
        hooks = [pk for (pk,) in sql.values(_HOOKS, [tenant.pk, True])]
    if not hooks:
        return []
    payload = {"type": "event", "tenant": tenant.slug, "event": data}
    now = timezone.now()
    rows = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(webhook_id=pk, event=event, payload=payload, next_attempt=now)
            for pk in hooks
        ]
    )
    return [row.pk for row in rows]


class _LiveBatch:
    """One on-commit hook for the live messages a transaction publishes one after the
    other (an object's event, then its state): one Redis round trip for all of their
    sequence numbers and states and one batch of channel-layer sends, instead of one of
    each per message. Its events' webhook deliveries are enqueued after it, also when
    the push failed (a dead channel layer must not lose them)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str, dict]] = []
        self.states: list[tuple] = []
        self.deliveries: list[int] = []

    def __call__(self) -> None:
        try:
            live.broadcast_many(self.messages, states=self.states)
        except Exception:  # noqa: BLE001 - logged; the webhooks still go out
            groups = sorted({group for groups, _, _ in self.messages for group in groups})
            logger.exception("could not push %d message(s) to %s", len(self.messages), groups)
        for delivery_id in self.deliveries:
            webhook_delivery_enqueue(delivery_id)


def _savepoints(ids) -> set:
    """The savepoints among Django's ids of a hook's atomic blocks: a block entered with
    ``savepoint=False`` (``event_publish`` inside a caller's transaction) is ``None``
    there, and no rollback of it drops a hook but the whole transaction's."""
    return {sid for sid in ids if sid is not None}


def _live_on_commit(
    message: tuple[list[str], str, dict], *, state: tuple | None = None, deliveries=()
) -> _LiveBatch:
    """Send ``message`` (and keep ``state`` in the snapshot) once the caller's
    transaction commits: in the batch of the on-commit hook registered just before this
    one when that is a batch registered in the same savepoint (which is what a hook of
    its own would be: the same place among the hooks, dropped by the same rollback),
    otherwise in a new batch. Outside a transaction: now. Returns the batch (its
    ``deliveries`` can still grow until it runs)."""
    connection = transaction.get_connection()
    batch = None
    if connection.in_atomic_block and connection.run_on_commit:
        last = connection.run_on_commit[-1]
        if isinstance(last[1], _LiveBatch) and _savepoints(last[0]) == _savepoints(
            connection.savepoint_ids
        ):
            batch = last[1]
    new = batch is None
    if new:
        batch = _LiveBatch()
    batch.messages.append(message)
    if state is not None:
        batch.states.append(state)
    batch.deliveries.extend(deliveries)
    if new:
        transaction.on_commit(batch, robust=True)
    return batch


# --- Resource states -------------------------------------------------------------------
def resource_publish(*, tenant: Tenant, kind: str, name: str, data: dict) -> None:
    """Push the current state of ``kind``/``name`` (e.g. ``{"phase": "Running",
    "message": "", "actions": ["stop", "pause"]}``) to the tenant's and the object's
    streams after commit, as ``{"type": "resource", "stream", "seq", "data": {"tenant",
    "kind", "name", "state": data}}``. No event row is written. The state is also kept
    as the object's entry in the resync snapshot.

    ``data`` must be a JSON-serialisable dict (``ValidationError`` otherwise).
    """
    _check_object(kind, name)
    if not isinstance(data, dict):
        raise ValidationError("Resource state must be a mapping.", errors={"data": ["Not a dict."]})
    try:
        state = json.loads(json.dumps(data))
    except (TypeError, ValueError):
        raise ValidationError(
            "Resource state must be JSON.", errors={"data": ["Not JSON-serialisable."]}
        ) from None
    slug = tenant.slug
    message = {"tenant": slug, "kind": kind, "name": name, "state": state}
    groups = [tenant_group(slug), object_group(slug, kind, name)]
    _live_on_commit((groups, LiveMessageType.RESOURCE, message), state=(slug, kind, name, state))


def resource_forget(*, tenant: Tenant, kind: str, name: str) -> None:
    """Say that ``kind``/``name`` is gone: drop it from the resync snapshot and push
    ``{"type": "resource", ..., "data": {"tenant", "kind", "name", "state": null,
    "deleted": true}}`` after commit."""
    _check_object(kind, name)
    slug = tenant.slug
    message = {"tenant": slug, "kind": kind, "name": name, "state": None, "deleted": True}

    def send() -> None:
        live.state_forget(slug, kind, name)
        live.broadcast(
            [tenant_group(slug), object_group(slug, kind, name)],
            LiveMessageType.RESOURCE,
            message,
        )

    transaction.on_commit(send, robust=True)


def metrics_publish(*, points: list[dict], totals: dict[str, dict] | None = None) -> None:
    """Push new metric points live, after the caller's transaction commits.

    ``points``: ``[{"tenant": slug, "vm": name, "point": {"t": ms, "cpu", "mem", "rd",
    "wr", "rx", "tx"}}]``; each goes to ``metrics_group(slug, vm)`` as ``{"type":
    "metrics", "stream", "seq", "data": {"tenant", "kind": "vm", "name", "point"}}``.
    ``totals``: ``{slug: {...}}`` (``monitoring.selectors.tenant_metric_totals``); each
    goes to the tenant stream as ``data: {"tenant", "totals"}``. All messages of one
    call share one Redis round trip and one batch of sends; failures are logged.
    """
    messages = [
        (
            [metrics_group(item["tenant"], item["vm"])],
            LiveMessageType.METRICS,
            {"tenant": item["tenant"], "kind": "vm", "name": item["vm"], "point": item["point"]},
        )
        for item in points
    ]
    for slug, data in (totals or {}).items():
        messages.append(
            ([tenant_group(slug)], LiveMessageType.METRICS, {"tenant": slug, "totals": data})
        )
    if messages:
        transaction.on_commit(lambda: live.broadcast_many(messages), robust=True)


def access_recheck(*, user_id: int, tenant_slug: str = "") -> None:
    """Ask every socket of the user to re-validate its subscriptions (now)."""
    live.control(user_group(user_id), {"action": "recheck", "tenant": tenant_slug})


def sessions_close(*, user_id: int, session_key: str = "", keep_session_key: str = "") -> None:
    """Close the user's sockets that were opened with ``session_key`` (signed out), or
    every socket of the user without one (deactivated or deleted, password set) but
    those opened with ``keep_session_key`` (a session that stays signed in)."""
    message = {"action": "close", "session_key": session_key}
    if not session_key:
        message = {"action": "close", "all": True, "keep": keep_session_key}
    live.control(user_group(user_id), message)


def events_prune(*, older_than: datetime) -> int:
    """Delete events last seen before ``older_than`` (and their deliveries)."""
    deleted, _ = Event.objects.filter(last_seen__lt=older_than).delete()
    return deleted


# --- Webhooks --------------------------------------------------------------------------
def _check_url(url: str) -> str:
    url = (url or "").strip()
    problem = ""
    if not url or len(url) > WEBHOOK_URL_MAX:
        problem = f"Enter a URL of at most {WEBHOOK_URL_MAX} characters."
    else:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except DjangoValidationError:
            problem = "Enter a valid http:// or https:// URL."
    if not problem:
        parts = urllib.parse.urlsplit(url)
        if parts.username or parts.password:
            problem = "Credentials in the URL are not allowed; use the signature instead."
        else:
            # A name that does not resolve yet is accepted: attempts retry it later. Every
            # attempt checks again (DNS answers change) and connects only where it checked.
            addresses, refusal = delivery.resolve(parts.hostname or "", parts.port)
            problem = refusal if addresses else ""
    if problem:
        raise ValidationError(problem, errors={"url": [problem]})
    return url


def _require_manage(actor, tenant: Tenant) -> None:
    if actor is not None and not tenant_selectors.can(actor, tenant, "webhook.manage"):
        raise PermissionDenied("Only the tenant's admins manage webhooks.")


@transaction.atomic
def webhook_create(
    *, actor, tenant: Tenant, url: str, description: str = ""
) -> tuple[Webhook, str]:
    """Register ``url`` to receive the tenant's events. Returns the webhook and its
    signing secret, which is stored encrypted and shown to the user only this once.

    Refuses (``ValidationError``, field ``url``) non-http(s) URLs, URLs with credentials,
    hosts that do not resolve and, in production, non-public addresses; ``Conflict`` for
    a URL the tenant already has; ``PermissionDenied`` unless ``actor`` is an admin.
    """
    _require_manage(actor, tenant)
    url = _check_url(url)
    description = (description or "").strip()
    if len(description) > 200:
        raise ValidationError("Description too long.", errors={"description": ["≤ 200."]})
    if Webhook.objects.filter(tenant=tenant).count() >= WEBHOOKS_PER_TENANT:
        raise Conflict(
            f"A tenant has at most {WEBHOOKS_PER_TENANT} webhooks.",
            errors={"url": ["Delete one first."]},
        )
    secret = "whsec_" + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            webhook = Webhook.objects.create(
                tenant=tenant,
                url=url,
                description=description,
                secret_encrypted=crypto.encrypt(secret),
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
    except IntegrityError:
        raise Conflict(
            "This tenant already has a webhook for that URL.",
            errors={"url": ["Already registered."]},
        ) from None
    audit_record(
        actor=actor,
        action="webhook.create",
        tenant=tenant,
        target=f"webhook/{webhook.uid}",
        detail={"url": url},
    )
    return webhook, secret


@transaction.atomic
def webhook_delete(*, actor, tenant: Tenant, webhook_uid: str) -> None:
    """Delete one of the tenant's webhooks (and its delivery history)."""
    _require_manage(actor, tenant)
    webhook = Webhook.objects.filter(tenant=tenant, uid=webhook_uid).first()
    if webhook is None:
        raise NotFound("No such webhook.")
    url = webhook.url
    webhook.delete()
    audit_record(
        actor=actor,
        action="webhook.delete",
        tenant=tenant,
        target=f"webhook/{webhook_uid}",
        detail={"url": url},
    )


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``<timestamp>.`` + body).

    Receivers recompute it from the ``X-Isotope-Timestamp`` header and the raw body,
    compare in constant time, and reject old timestamps to stop replays.
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_delivery_enqueue(delivery_id: int) -> None:
    """Hand a delivery to Celery without ever blocking or failing the caller."""
    from monitoring.tasks import webhook_deliver

    try:
        webhook_deliver.apply_async((delivery_id,), retry=False)
    except Exception:  # noqa: BLE001 - the sweeper re-enqueues what the broker lost
        logger.exception("could not enqueue webhook delivery %s", delivery_id)


def _backoff(attempts: int) -> float:
    base = float(_setting("ISOTOPE_WEBHOOK_RETRY_BASE", 10))
    cap = float(_setting("ISOTOPE_WEBHOOK_RETRY_MAX", 900))
    return min(base * 2 ** (attempts - 1), cap)


@dataclass(frozen=True)
class _Claim:
    """One attempt a worker took on: what to send, or the outcome decided without it."""

    delivery_id: int
    attempt: int
    url: str = ""
    body: bytes = b""
    headers: dict | None = None
    outcome: delivery.Outcome | None = None


def _lease_seconds() -> float:
    """How long an attempt may take before another worker may try again."""
    return max(60.0, 4 * float(_setting("ISOTOPE_WEBHOOK_TIMEOUT", 5)))


def _delivery_claim(delivery_id: int) -> _Claim | WebhookDelivery | None:
    """Take the next attempt of a due delivery (a short transaction, row locked only for
    it): count the attempt and push ``next_attempt`` past a lease, so another worker
    neither sends it meanwhile nor waits on a lock. Returns the delivery itself when
    there is nothing to do (finished, or not due: another worker has it or a retry is
    scheduled), None when it is gone or locked right now."""
    with transaction.atomic():
        row = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("webhook")
            .filter(pk=delivery_id)
            .first()
        )
        if row is None or row.status != DeliveryStatus.PENDING:
            return row
        now = timezone.now()
        if row.next_attempt is not None and row.next_attempt > now:
            return row
        row.attempts += 1
        row.last_attempt = now
        row.next_attempt = now + timedelta(seconds=_lease_seconds())
        row.save(update_fields=["attempts", "last_attempt", "next_attempt"])
        webhook = row.webhook
        claim = _Claim(delivery_id=row.pk, attempt=row.attempts)
        if not webhook.active:
            return replace(claim, outcome=delivery.Outcome(None, "The webhook is disabled.", True))
        try:
            secret = crypto.decrypt(webhook.secret_encrypted)
        except crypto.SecretUnreadable as error:
            message = f"{error}; re-create the webhook."
            return replace(claim, outcome=delivery.Outcome(None, message, permanent=True))
        body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Isotope-Webhook/1",
            DELIVERY_HEADER: str(row.uid),
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: webhook_signature(secret, stamp, body),
        }
        return replace(claim, url=webhook.url, body=body, headers=headers)


def _delivery_record(claim: _Claim, outcome: delivery.Outcome) -> WebhookDelivery | None:
    """Write how the claimed attempt went, unless another worker has taken the delivery
    over since (its lease ran out): then that worker's attempt is the one recorded."""
    with transaction.atomic():
        row = (
            WebhookDelivery.objects.select_for_update()
            .filter(pk=claim.delivery_id, attempts=claim.attempt, status=DeliveryStatus.PENDING)
            .first()
        )
        if row is None:
            return WebhookDelivery.objects.filter(pk=claim.delivery_id).first()
        now = timezone.now()
        row.last_status_code = outcome.status_code
        row.last_error = outcome.error
        max_attempts = int(_setting("ISOTOPE_WEBHOOK_MAX_ATTEMPTS", 6))
        if outcome.ok:
            row.status = DeliveryStatus.SUCCEEDED
            row.finished = now
            row.next_attempt = None
        elif outcome.permanent or row.attempts >= max_attempts:
            row.status = DeliveryStatus.FAILED
            row.finished = now
            row.next_attempt = None
            logger.warning(
                "webhook delivery %s failed after %s attempts: %s",
                row.uid,
                row.attempts,
                outcome.error or outcome.status_code,
            )
        else:
            row.next_attempt = now + timedelta(seconds=_backoff(row.attempts))
        row.save(
            update_fields=["status", "last_status_code", "last_error", "next_attempt", "finished"]
        )
        return row


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a pending delivery and record how it went.

    Idempotent: a delivery that has succeeded or failed, or is not due (another worker
    is sending it, or its retry is later), is returned untouched; one locked this very
    moment returns None. The HTTP request is sent outside any transaction and holds no
    row lock. A non-2xx answer or a network error leaves it ``pending`` with
    ``next_attempt`` set by exponential backoff until ``ISOTOPE_WEBHOOK_MAX_ATTEMPTS``
    (default 6); then it is ``failed``. Refused destinations and unreadable secrets fail
    at once.
    """
    claim = _delivery_claim(delivery_id)
    if not isinstance(claim, _Claim):
        return claim
    outcome = claim.outcome
    if outcome is None:
        timeout = float(_setting("ISOTOPE_WEBHOOK_TIMEOUT", 5))
        outcome = delivery.post(claim.url, claim.body, claim.headers or {}, timeout=timeout)
    return _delivery_record(claim, outcome)


def webhook_deliveries_requeue(*, overdue: timedelta = timedelta(minutes=2)) -> int:
    """Re-enqueue pending deliveries whose attempt is overdue (a lost task or broker
    message); returns how many. Safe to run any time: attempts are idempotent.

    The overdue rows are locked as they are read, and one a worker is claiming right
    now (locked) is skipped: writing over it after the claim would cut the claim's
    lease short, and another worker could send it again meanwhile."""
    cutoff = timezone.now() - overdue
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt__lt=cutoff)
            .values_list("pk", flat=True)[:1000]
        )
        # Push next_attempt out so the next sweep does not enqueue them again meanwhile.
        WebhookDelivery.objects.filter(pk__in=due).update(next_attempt=timezone.now())
    for pk in due:
        webhook_delivery_enqueue(pk)
    return len(due)
