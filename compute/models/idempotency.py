"""Stored results of API creates, so a retried request returns the first result."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


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
        verbose_name=_("user"),
        db_index=False,
    )
    scope = models.CharField(
        max_length=200,
        verbose_name=_("scope"),
    )
    key = models.CharField(
        max_length=255,
        verbose_name=_("idempotency key"),
    )
    fingerprint = models.CharField(
        max_length=64,
        verbose_name=_("fingerprint"),
    )
    status_code = models.PositiveSmallIntegerField(
        verbose_name=_("status code"),
    )
    body = models.JSONField(
        verbose_name=_("body"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )
    expires = models.DateTimeField(
        db_index=True,
        verbose_name=_("expires"),
    )

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "scope", "key"],
                name="%(app_label)s_%(class)s_unique_user_scope_key",
                violation_error_message="This Idempotency-Key was used already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
