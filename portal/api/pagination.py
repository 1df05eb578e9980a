"""List responses: ``{"items": [...], "count": N, "next": url, "previous": url}``.

``limit`` and ``offset`` are whole numbers in a documented range; anything else is a
400 naming the parameter (DRF's default silently falls back, which hides client bugs,
and passes offsets too large for the database's bigint through to a 500).
"""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from portal.exceptions import ValidationError

MAX_OFFSET = 2**31 - 1


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def _number(self, request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        text = raw.strip()
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise ValidationError(
                f"Invalid {name}.", errors={name: [f"A whole number from {low} to {high}."]}
            )
        return int(text)

    def get_limit(self, request) -> int:
        return self._number(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request) -> int:
        return self._number(request, self.offset_query_param, 0, 0, MAX_OFFSET)

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "items": data,
            }
        )

    def get_schema_operation_parameters(self, view):
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"] |= {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit}
        offset["schema"] |= {"minimum": 0, "maximum": MAX_OFFSET, "default": 0}
        return [limit, offset]

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "items"],
            "properties": {
                "count": {"type": "integer"},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "items": schema,
            },
        }
