"""REST API for events: ``GET /api/v1/tenants/<tenant>/events/``.

Items have the shape of ``monitoring.formats.event_data`` (Kubernetes Event-like);
filters ``type``, ``kind``, ``name``, ``reason`` as on the timeline page; paginated.
"""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

from monitoring import selectors
from monitoring.choices import EventType
from monitoring.filters import EventFilter
from monitoring.formats import event_data
from monitoring.models import Event
from tenants import selectors as tenant_selectors


class InvolvedObjectSerializer(serializers.Serializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    uid = serializers.CharField(allow_blank=True)


class EventSerializer(serializers.Serializer):
    uid = serializers.UUIDField()
    tenant = serializers.CharField()
    type = serializers.ChoiceField(choices=EventType.choices)
    reason = serializers.CharField()
    message = serializers.CharField(allow_blank=True)
    involvedObject = InvolvedObjectSerializer()  # noqa: N815
    source = serializers.CharField()
    count = serializers.IntegerField()
    firstTimestamp = serializers.DateTimeField()  # noqa: N815
    lastTimestamp = serializers.DateTimeField()  # noqa: N815

    def to_representation(self, event) -> dict:
        return event_data(event, tenant_slug=self.context["tenant"].slug)


class EventListView(GenericAPIView):
    """The tenant's events, newest (last seen) first."""

    serializer_class = EventSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = EventFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Event.objects.none()
        tenant = tenant_selectors.tenant_get(self.request.user, self.kwargs["tenant"], "event.view")
        self.tenant_obj = tenant
        return selectors.events_visible(self.request.user, tenant)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "tenant": getattr(self, "tenant_obj", None)}

    @extend_schema(
        operation_id="events_list",
        summary="Events of the tenant (filterable)",
        responses=EventSerializer(many=True),
        parameters=[
            # As on the timeline page, an empty type means any type.
            OpenApiParameter("type", str, enum=["", *EventType.values], description="Filter.")
        ],
    )
    def get(self, request, tenant):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
