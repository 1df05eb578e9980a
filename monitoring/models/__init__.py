"""Monitoring data: events (``events.py``) and tenant webhooks (``webhooks.py``)."""

from monitoring.models.events import Event
from monitoring.models.webhooks import Webhook, WebhookDelivery

__all__ = ["Event", "Webhook", "WebhookDelivery"]
