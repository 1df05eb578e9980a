"""Application errors raised by services and selectors.

Views, the API and consumers translate them: ``NotFound`` → 404 (also for another
tenant's objects, so nothing leaks), ``PermissionDenied`` → 403, ``QuotaExceeded`` → 403
naming every resource over its limit, ``Conflict`` → 409, ``PreconditionFailed`` → 412,
``ValidationError`` → 400 with field errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class ApplicationError(Exception):
    """Base of every error a service raises on purpose. ``message`` is shown to users."""

    status = 400
    title = _("Bad request")
    slug = "bad-request"

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class ValidationError(ApplicationError):
    status = 400
    title = _("Invalid input")
    slug = "invalid"


class NotFound(ApplicationError):
    status = 404
    title = _("Not found")
    slug = "not-found"


class PermissionDenied(ApplicationError):
    status = 403
    title = _("Forbidden")
    slug = "forbidden"


class Conflict(ApplicationError):
    status = 409
    title = _("Conflict")
    slug = "conflict"


class PreconditionFailed(ApplicationError):
    status = 412
    title = _("Precondition failed")
    slug = "precondition-failed"


@dataclass(frozen=True)
class Shortfall:
    """One quota resource that a request does not fit in."""

    resource: str
    requested: int | Decimal
    left: int | Decimal
    limit: int | Decimal
    unit: str = ""

    @property
    def amounts(self) -> str:
        """The amounts, e.g. "requested 4 cores, 1 core left of 1 core"."""
        return gettext("requested %(requested)s, %(left)s left of %(limit)s") % {
            "requested": _quantity(self.requested, self.unit),
            "left": _quantity(self.left, self.unit),
            "limit": _quantity(self.limit, self.unit),
        }

    @property
    def message(self) -> str:
        return gettext("Quota exceeded for %(resource)s: %(amounts)s.") % {
            "resource": self.resource,
            "amounts": self.amounts,
        }

    def as_dict(self) -> dict:
        """The API's shape (numbers as strings: CPU is fractional)."""
        return {
            "resource": self.resource,
            "requested": plain_number(self.requested),
            "left": plain_number(self.left),
            "limit": plain_number(self.limit),
            "unit": self.unit,
        }


class QuotaExceeded(PermissionDenied):
    """A reservation would take one or more resources past the tenant's limits.

    ``shortfalls`` names every resource that does not fit (so a person fixes them all at
    once); ``resource``, ``requested``, ``left``, ``limit`` and ``unit`` are the first
    one's. ``errors`` has one message per resource.
    """

    title = _("Quota exceeded")
    slug = "quota-exceeded"

    def __init__(self, shortfalls: list[Shortfall] | tuple[Shortfall, ...]):
        if not shortfalls:
            raise ValueError("QuotaExceeded needs at least one shortfall")
        self.shortfalls = tuple(shortfalls)
        first = self.shortfalls[0]
        self.resource = first.resource
        self.requested = first.requested
        self.left = first.left
        self.limit = first.limit
        self.unit = first.unit
        message = gettext("Quota exceeded for %(resources)s.") % {
            "resources": "; ".join(f"{s.resource}: {s.amounts}" for s in self.shortfalls)
        }
        super().__init__(message, errors={s.resource: [s.message] for s in self.shortfalls})
        # What an event stores: English, as every stored message (portal.texts), whatever
        # the language of the request that was refused.
        with translation.override("en"):
            self.stored_message = gettext("Quota exceeded for %(resources)s.") % {
                "resources": "; ".join(f"{s.resource}: {s.amounts}" for s in self.shortfalls)
            }


# Units counted in things, singular for one ("1 core", "1 VM"), in the reader's language.
_UNITS = {
    "cores": (_("core"), _("cores")),
    "VMs": (_("VM"), _("VMs")),
    "pods": (_("pod"), _("pods")),
}


def _quantity(value: int | Decimal, unit: str) -> str:
    if not unit:
        return plain_number(value)
    one, many = _UNITS.get(unit, (unit, unit))
    return f"{plain_number(value)} {one if value == 1 else many}"


def plain_number(value: int | Decimal) -> str:
    """Decimal('2.500') → '2.5', Decimal('0.000') → '0', Decimal('16384.00') → '16384'."""
    if isinstance(value, Decimal):
        text = f"{value.normalize():f}"
        return text
    return str(value)
