"""Tenant webhooks (observers of the event stream) and their deliveries."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from monitoring.choices import DeliveryStatus


class Webhook(models.Model):
    """A URL that receives every event of its tenant as a signed JSON POST.

    ``secret_encrypted`` holds the signing secret encrypted with a key derived from
    ``SECRET_KEY`` (see ``monitoring.crypto``): deliveries need the plain secret to sign,
    so it cannot be hashed; the UI shows it once, when the webhook is created.
    """

    uid = models.UUIDField(
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        related_name="webhooks",
    )
    url = models.URLField(
        max_length=500,
    )
    description = models.CharField(
        max_length=200,
        blank=True,
    )
    secret_encrypted = models.TextField(
        editable=False,
    )
    active = models.BooleanField(
        default=True,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created = models.DateTimeField(
        auto_now_add=True,
    )

    class Meta:
        ordering = ["tenant", "created", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "url"],
                name="%(app_label)s_%(class)s_unique_tenant_url",
                violation_error_message="This tenant already has a webhook for that URL.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} → {self.url}"


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook.

    ``payload`` is fixed when the delivery is created, so every attempt sends the same
    bytes; ``uid`` goes out as ``X-Isotope-Delivery`` for receivers to deduplicate.
    """

    uid = models.UUIDField(
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    webhook = models.ForeignKey(
        Webhook,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    event = models.ForeignKey(
        "monitoring.Event",
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    payload = models.JSONField()
    status = models.CharField(
        max_length=16,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
    )
    attempts = models.PositiveIntegerField(
        default=0,
    )
    last_status_code = models.PositiveIntegerField(
        null=True,
        blank=True,
    )
    last_error = models.TextField(
        blank=True,
    )
    created = models.DateTimeField(
        auto_now_add=True,
    )
    last_attempt = models.DateTimeField(
        null=True,
        blank=True,
    )
    next_attempt = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When a pending delivery is due; the sweeper re-enqueues overdue ones."),
    )
    finished = models.DateTimeField(
        null=True,
        blank=True,
    )

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["status", "next_attempt"],
                name="monitoring_delivery_due",
            ),
            models.Index(
                fields=["webhook", "-created"],
                name="monitoring_delivery_recent",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values),
                name="%(app_label)s_%(class)s_status_valid",
                violation_error_message="Unknown delivery status.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.webhook} #{self.event_id} {self.status}"
