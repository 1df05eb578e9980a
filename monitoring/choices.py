"""Choices for events and webhook deliveries."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class EventType(models.TextChoices):
    """Kubernetes' two event types: routine (Normal) or needs attention (Warning)."""

    NORMAL = "Normal", _("Normal")
    WARNING = "Warning", _("Warning")


class DeliveryStatus(models.TextChoices):
    """Where one webhook delivery stands. ``pending`` covers waiting for a retry."""

    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class LiveMessageType(models.TextChoices):
    """The ``type`` of a message pushed to websocket subscribers."""

    EVENT = "event", _("Event")
    RESOURCE = "resource", _("Resource state")
    METRICS = "metrics", _("Metric points")
    NOTIFICATION = "notification", _("Notification")


class NotificationKind(models.TextChoices):
    """What a user can be notified about (each can be turned off, in-app or by email)."""

    QUOTA_REQUEST = "quota.request", _("Quota request decisions")
    QUOTA_THRESHOLD = "quota.threshold", _("Quota nearly exhausted (80 %, 95 %)")
    VM_FAILED = "vm.failed", _("A VM failed")
    WORKLOAD_FAILED = "workload.failed", _("A workload failed")
    MIGRATION_FAILED = "migration.failed", _("A live migration failed")
    SNAPSHOT_FAILED = "snapshot.failed", _("A scheduled snapshot failed")


class NotificationLevel(models.TextChoices):
    """How a notification is shown (its colour and icon)."""

    INFO = "info", _("Info")
    SUCCESS = "success", _("Success")
    WARNING = "warning", _("Warning")
    DANGER = "danger", _("Danger")
