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
