"""Monitoring data: events (``events.py``), tenant webhooks (``webhooks.py``) and VM
metrics (``metrics.py``)."""

from monitoring.models.events import Event
from monitoring.models.metrics import VMCounters, VMRollup, VMSample
from monitoring.models.webhooks import Webhook, WebhookDelivery

__all__ = ["Event", "VMCounters", "VMRollup", "VMSample", "Webhook", "WebhookDelivery"]
