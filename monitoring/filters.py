"""Event filters shared by the timeline page and the API (GET parameters).

``type`` (Normal/Warning), ``kind`` (exact), ``name`` (substring, case-insensitive),
``reason`` (exact, case-insensitive).
"""

from __future__ import annotations

import django_filters

from monitoring.choices import EventType
from monitoring.models import Event


class EventFilter(django_filters.FilterSet):
    type = django_filters.ChoiceFilter(choices=EventType.choices, empty_label="Any type")
    kind = django_filters.CharFilter(field_name="kind", lookup_expr="exact", max_length=32)
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains", max_length=253)
    reason = django_filters.CharFilter(field_name="reason", lookup_expr="iexact", max_length=64)

    class Meta:
        model = Event
        fields = ["type", "kind", "name", "reason"]
