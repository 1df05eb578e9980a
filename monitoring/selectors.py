"""Reads for monitoring. Tenant isolation goes through ``tenants.selectors.restrict``."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from monitoring.choices import DeliveryStatus
from monitoring.models import Event, Webhook, WebhookDelivery
from tenants.models import Tenant
from tenants.selectors import restrict


def events_visible(user, tenant: Tenant) -> QuerySet[Event]:
    """The tenant's events, newest first, if ``user`` may view them (else none)."""
    return restrict(user, "event.view", Event.objects.filter(tenant=tenant)).order_by(
        "-last_seen", "-id"
    )


def events_recent(tenant: Tenant, *, kind: str = "", name: str = "", limit: int = 50) -> list:
    """The latest events of the tenant, or of one object (for resyncs). Unrestricted:
    callers have checked access already."""
    queryset = Event.objects.filter(tenant=tenant)
    if kind:
        queryset = queryset.filter(kind=kind, name=name)
    return list(queryset.order_by("-last_seen", "-id")[:limit])


def webhooks_of(tenant: Tenant) -> QuerySet[Webhook]:
    """The tenant's webhooks with delivery counts per status."""
    return (
        Webhook.objects.filter(tenant=tenant)
        .select_related("created_by")
        .annotate(
            delivered=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.SUCCEEDED)),
            pending=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
            failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
        )
        .order_by("created", "id")
    )


def deliveries_recent(tenant: Tenant, *, limit: int = 50) -> list[WebhookDelivery]:
    """The tenant's latest webhook deliveries, with their webhook and event."""
    return list(
        WebhookDelivery.objects.filter(webhook__tenant=tenant)
        .select_related("webhook", "event")
        .order_by("-created", "-id")[:limit]
    )
