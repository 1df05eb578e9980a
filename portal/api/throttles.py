"""Rate limits on DRF's throttles, kept in the default cache (Redis, shared by every web
process). Rates are ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (settings, from the
environment). A refusal is DRF's ``Throttled``: 429 ``application/problem+json`` with
``Retry-After`` (``portal.api.errors``).

Client addresses come from ``portal.middleware.client_ip`` (``X-Forwarded-For`` only from
``ISOTOPE_TRUSTED_PROXIES``), never from a header any client can set.
"""

from __future__ import annotations

import math

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from portal.middleware import client_ip


class _Throttle(SimpleRateThrottle):
    """Rates read when the throttle is made (so a settings change applies at once), the
    client address by the portal's rule, and ``wait`` exact for a sliding window."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request) -> str:
        return client_ip(request) or "unknown"

    def wait(self) -> float:
        """Seconds until the oldest counted hit leaves the window (at least 1)."""
        if len(self.history) < self.num_requests:
            return 0.0
        oldest_counted = self.history[self.num_requests - 1]
        return max(1.0, math.ceil(self.duration - (self.now - oldest_counted)))


class TokenFailureThrottle(_Throttle):
    """Failed ``Authorization: Token`` authentications per client address.

    Unlike a request throttle it counts only failures, so checking and counting are
    separate: :meth:`refused` before a token is looked at (every request from a locked
    address is refused, valid token or not: otherwise guessing would go on), and
    :meth:`failure` after a token was rejected.
    """

    scope = "token_failure"

    def get_cache_key(self, request, view=None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _load(self, request) -> None:
        self.key = self.get_cache_key(request)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]

    def refused(self, request) -> float | None:
        """Seconds to wait when this address has failed too often lately, else None."""
        if self.rate is None:
            return None
        self._load(request)
        return self.wait() if len(self.history) >= self.num_requests else None

    def failure(self, request) -> bool:
        """Count one failure; True when it is the one that reaches the limit."""
        if self.rate is None:
            return False
        self._load(request)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)
        return len(self.history) == self.num_requests


class ConsoleTicketThrottle(_Throttle, UserRateThrottle):
    """Console tickets per user, whether the console page or the API issues them."""

    scope = "console_ticket"
