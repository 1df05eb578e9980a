"""Application errors raised by services and selectors.

Views, the API and consumers translate them: ``NotFound`` → 404 (also for another
tenant's objects, so nothing leaks), ``PermissionDenied`` → 403, ``QuotaExceeded`` → 403
naming the resource, ``Conflict`` → 409, ``PreconditionFailed`` → 412,
``ValidationError`` → 400 with field errors.
"""

from __future__ import annotations

from decimal import Decimal


class ApplicationError(Exception):
    """Base of every error a service raises on purpose. ``message`` is shown to users."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class ValidationError(ApplicationError):
    status = 400
    title = "Invalid input"
    slug = "invalid"


class NotFound(ApplicationError):
    status = 404
    title = "Not found"
    slug = "not-found"


class PermissionDenied(ApplicationError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class Conflict(ApplicationError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class PreconditionFailed(ApplicationError):
    status = 412
    title = "Precondition failed"
    slug = "precondition-failed"


class QuotaExceeded(PermissionDenied):
    """A reservation would take a resource past the tenant's limit."""

    title = "Quota exceeded"
    slug = "quota-exceeded"

    def __init__(
        self,
        *,
        resource: str,
        requested: int | Decimal,
        left: int | Decimal,
        limit: int | Decimal,
        unit: str = "",
    ):
        self.resource = resource
        self.requested = requested
        self.left = left
        self.limit = limit
        self.unit = unit
        suffix = f" {unit}" if unit else ""
        message = (
            f"Quota exceeded for {resource}: requested {_fmt(requested)}{suffix}, "
            f"{_fmt(left)}{suffix} left of {_fmt(limit)}{suffix}."
        )
        super().__init__(message, errors={resource: [message]})


def _fmt(value: int | Decimal) -> str:
    """Decimal('2.500') → '2.5', Decimal('0.000') → '0'."""
    if isinstance(value, Decimal):
        text = f"{value.normalize():f}"
        return text
    return str(value)
