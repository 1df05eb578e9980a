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
        verbose_name=_("UID"),
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        verbose_name=_("tenant"),
        on_delete=models.CASCADE,
        related_name="webhooks",
        db_index=False,
    )
    url = models.URLField(
        verbose_name=_("URL"),
        max_length=500,
    )
    description = models.CharField(
        verbose_name=_("description"),
        max_length=200,
        blank=True,
    )
    secret_encrypted = models.TextField(
        verbose_name=_("encrypted secret"),
        editable=False,
    )
    active = models.BooleanField(
        verbose_name=_("active"),
        default=True,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created = models.DateTimeField(
        verbose_name=_("created"),
        auto_now_add=True,
    )

    class Meta:
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")
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
        verbose_name=_("UID"),
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    webhook = models.ForeignKey(
        Webhook,
        verbose_name=_("webhook"),
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
    )
    event = models.ForeignKey(
        "monitoring.Event",
        verbose_name=_("event"),
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    payload = models.JSONField(
        verbose_name=_("payload"),
    )
    status = models.CharField(
        verbose_name=_("status"),
        max_length=16,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
    )
    attempts = models.PositiveIntegerField(
        verbose_name=_("attempts"),
        default=0,
    )
    last_status_code = models.PositiveIntegerField(
        verbose_name=_("last status code"),
        null=True,
        blank=True,
    )
    last_error = models.TextField(
        verbose_name=_("last error"),
        blank=True,
    )
    created = models.DateTimeField(
        verbose_name=_("created"),
        auto_now_add=True,
    )
    last_attempt = models.DateTimeField(
        verbose_name=_("last attempt"),
        null=True,
        blank=True,
    )
    next_attempt = models.DateTimeField(
        verbose_name=_("next attempt"),
        null=True,
        blank=True,
        help_text=_("When a pending delivery is due; the sweeper re-enqueues overdue ones."),
    )
    finished = models.DateTimeField(
        verbose_name=_("finished"),
        null=True,
        blank=True,
    )

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created", "-id"]
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
