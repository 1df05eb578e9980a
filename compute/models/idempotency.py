"""Stored results of API creates, so a retried request returns the first result."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class IdempotencyKey(models.Model):
    """One ``Idempotency-Key`` a user sent for one scope (e.g. ``acme/virtualmachines``).

    ``fingerprint`` is a hash of the request body: the same key with another body is a
    client error, not a replay. The row is written in the same transaction as what the
    request created, so a key never points at something that does not exist.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
    )
    scope = models.CharField(
        max_length=200,
    )
    key = models.CharField(
        max_length=255,
    )
    fingerprint = models.CharField(
        max_length=64,
    )
    status_code = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created = models.DateTimeField(
        auto_now_add=True,
    )
    expires = models.DateTimeField(
        db_index=True,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "scope", "key"],
                name="%(app_label)s_%(class)s_unique_user_scope_key",
                violation_error_message="This Idempotency-Key was used already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
