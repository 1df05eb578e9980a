"""Monitoring data: events (``events.py``), tenant webhooks (``webhooks.py``) and VM
metrics (``metrics.py``) and the notification centre (``notifications.py``)."""

from monitoring.models.events import Event
from monitoring.models.metrics import VMCounters, VMRollup, VMSample
from monitoring.models.notifications import Notification, NotificationPreference
from monitoring.models.webhooks import Webhook, WebhookDelivery

__all__ = [
    "Event",
    "Notification",
    "NotificationPreference",
    "VMCounters",
    "VMRollup",
    "VMSample",
    "Webhook",
    "WebhookDelivery",
]
