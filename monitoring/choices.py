"""Choices for events and webhook deliveries."""

from django.db import models


class EventType(models.TextChoices):
    """Kubernetes' two event types: routine (Normal) or needs attention (Warning)."""

    NORMAL = "Normal", "Normal"
    WARNING = "Warning", "Warning"


class DeliveryStatus(models.TextChoices):
    """Where one webhook delivery stands. ``pending`` covers waiting for a retry."""

    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class LiveMessageType(models.TextChoices):
    """The ``type`` of a message pushed to websocket subscribers."""

    EVENT = "event", "Event"
    RESOURCE = "resource", "Resource state"
    METRICS = "metrics", "Metric points"
    NOTIFICATION = "notification", "Notification"


class NotificationKind(models.TextChoices):
    """What a user can be notified about (each can be turned off, in-app or by email)."""

    QUOTA_REQUEST = "quota.request", "Quota request decisions"
    QUOTA_THRESHOLD = "quota.threshold", "Quota nearly exhausted (80 %, 95 %)"
    VM_FAILED = "vm.failed", "A VM failed"
    WORKLOAD_FAILED = "workload.failed", "A workload failed"
    MIGRATION_FAILED = "migration.failed", "A live migration failed"
    SNAPSHOT_FAILED = "snapshot.failed", "A scheduled snapshot failed"


class NotificationLevel(models.TextChoices):
    """How a notification is shown (its colour and icon)."""

    INFO = "info", "Info"
    SUCCESS = "success", "Success"
    WARNING = "warning", "Warning"
    DANGER = "danger", "Danger"
