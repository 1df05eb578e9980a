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
        verbose_name=_("UID"),
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        verbose_name=_("tenant"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    tenant_slug = models.CharField(
        verbose_name=_("tenant slug"),
        max_length=40,
        blank=True,
    )
    kind = models.CharField(
        verbose_name=_("kind"),
        max_length=32,
        choices=NotificationKind.choices,
    )
    level = models.CharField(
        verbose_name=_("level"),
        max_length=16,
        choices=NotificationLevel.choices,
        default=NotificationLevel.INFO,
    )
    title = models.CharField(
        verbose_name=_("title"),
        max_length=200,
    )
    message = models.TextField(
        verbose_name=_("message"),
        max_length=2000,
        blank=True,
    )
    link = models.CharField(
        verbose_name=_("link"),
        max_length=300,
        blank=True,
        help_text=_("A path in the portal, e.g. /t/acme/vms/web1/."),
    )
    created = models.DateTimeField(
        verbose_name=_("created"),
        auto_now_add=True,
    )
    read = models.DateTimeField(
        verbose_name=_("read"),
        null=True,
        blank=True,
    )
    in_app = models.BooleanField(
        verbose_name=_("in the portal"),
        default=True,
    )
    email = models.BooleanField(
        verbose_name=_("by email"),
        default=False,
        help_text=_("The user wants this one by email."),
    )
    emailed = models.DateTimeField(
        verbose_name=_("emailed"),
        null=True,
        blank=True,
    )

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
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
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="notification_preferences",
        db_index=False,
    )
    kind = models.CharField(
        verbose_name=_("kind"),
        max_length=32,
        choices=NotificationKind.choices,
    )
    in_app = models.BooleanField(
        verbose_name=_("in the portal"),
        default=True,
    )
    email = models.BooleanField(
        verbose_name=_("by email"),
        default=True,
    )
    updated = models.DateTimeField(
        verbose_name=_("updated"),
        auto_now=True,
    )

    class Meta:
        verbose_name = _("notification preference")
        verbose_name_plural = _("notification preferences")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind"],
                name="%(app_label)s_%(class)s_unique_user_kind",
                violation_error_message="One preference per user and kind.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.kind}: in-app {self.in_app}, email {self.email}"
