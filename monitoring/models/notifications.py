"""The in-app notification centre and each user's notification preferences."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from monitoring.choices import NotificationKind, NotificationLevel


class Notification(models.Model):
    """Something one user is told about: shown in the bell (``in_app``) and/or mailed
    (``email``; ``emailed`` once it was sent)."""

    uid = models.UUIDField(
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    tenant_slug = models.CharField(
        max_length=40,
        blank=True,
    )
    kind = models.CharField(
        max_length=32,
        choices=NotificationKind.choices,
    )
    level = models.CharField(
        max_length=16,
        choices=NotificationLevel.choices,
        default=NotificationLevel.INFO,
    )
    title = models.CharField(
        max_length=200,
    )
    message = models.TextField(
        max_length=2000,
        blank=True,
    )
    link = models.CharField(
        max_length=300,
        blank=True,
        help_text=_("A path in the portal, e.g. /t/acme/vms/web1/."),
    )
    created = models.DateTimeField(
        auto_now_add=True,
    )
    read = models.DateTimeField(
        null=True,
        blank=True,
    )
    in_app = models.BooleanField(
        default=True,
    )
    email = models.BooleanField(
        default=False,
        help_text=_("The user wants this one by email."),
    )
    emailed = models.DateTimeField(
        null=True,
        blank=True,
    )

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["user", "-created"], name="monitoring_notif_user_created"),
            models.Index(
                fields=["user"],
                condition=Q(read__isnull=True, in_app=True),
                name="monitoring_notif_unread",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.title}"


class NotificationPreference(models.Model):
    """One user's choice for one kind; a kind without a row uses the defaults (in the
    portal and by email)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_preferences",
    )
    kind = models.CharField(
        max_length=32,
        choices=NotificationKind.choices,
    )
    in_app = models.BooleanField(
        default=True,
    )
    email = models.BooleanField(
        default=True,
    )
    updated = models.DateTimeField(
        auto_now=True,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind"],
                name="%(app_label)s_%(class)s_unique_user_kind",
                violation_error_message="One preference per user and kind.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.kind}: in-app {self.in_app}, email {self.email}"
