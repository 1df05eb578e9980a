"""``Idempotency-Key`` for creates: a retried request returns the first result.

The key row is inserted in the same transaction as whatever the request creates. A
concurrent retry with the same key waits on the row's unique index until the first
request commits, then replays its stored result; if the first request rolled back there
is no row and the retry runs afresh. So a key never yields a twin.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from compute.models import IdempotencyKey
from portal.exceptions import ApplicationError, ValidationError

logger = logging.getLogger(__name__)

KEY_MAX = 255
TTL = timedelta(hours=24)


class IdempotencyKeyReused(ApplicationError):
    """The same key came back with a different request body."""

    status = 422
    title = "Idempotency-Key reused"
    slug = "idempotency-key-reused"


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict
    replayed: bool


def fingerprint(data) -> str:
    """A stable hash of a JSON-like request body (key order does not matter)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_check(key: str) -> str:
    """The key as sent, or ``ValidationError`` when it is empty, too long or not ASCII."""
    key = (key or "").strip()
    if not key or len(key) > KEY_MAX or not key.isascii() or not key.isprintable():
        raise ValidationError(
            gettext("Invalid Idempotency-Key header."),
            errors={
                "Idempotency-Key": [
                    gettext("1 to %(max)s printable ASCII characters.") % {"max": KEY_MAX}
                ]
            },
        )
    return key


def idempotent_run(
    *,
    user,
    scope: str,
    key: str,
    fingerprint: str,
    execute: Callable[[], tuple[int, dict]],
) -> Outcome:
    """Run ``execute`` once per (user, scope, key) and store its (status, body).

    ``execute`` runs inside this function's transaction and returns the response to
    store, including refusals the caller chose to render (a quota refusal stays the
    answer to that key). An exception from ``execute`` rolls everything back and stores
    nothing. The same key with another ``fingerprint`` raises ``IdempotencyKeyReused``.
    """
    key = idempotency_key_check(key)
    now = timezone.now()
    with transaction.atomic():
        # An expired key is forgotten, so it can be used again.
        IdempotencyKey.objects.filter(user=user, scope=scope, key=key, expires__lte=now).delete()
        record, created = IdempotencyKey.objects.get_or_create(
            user=user,
            scope=scope,
            key=key,
            defaults={
                "fingerprint": fingerprint,
                "status_code": 0,
                "body": {},
                "expires": now + TTL,
            },
        )
        if not created:
            if record.fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used for a different request. "
                    "Use a new key for a new request.",
                    errors={"Idempotency-Key": ["Used before with another body."]},
                )
            return Outcome(record.status_code, record.body, replayed=True)
        status_code, body = execute()
        record.status_code, record.body = status_code, body
        record.save(update_fields=["status_code", "body"])
    return Outcome(status_code, body, replayed=False)


def idempotency_prune(*, now: datetime | None = None) -> int:
    """Delete expired keys; returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(expires__lte=now or timezone.now()).delete()
    return deleted
