"""Fault injection for chaos tests, off unless ``ISOTOPE_FAILPOINTS`` names a point.

``ISOTOPE_FAILPOINTS="provision.after_define=sleep:5,other=sleep:1"`` makes
``failpoint("provision.after_define")`` sleep 5 s, so a test can kill a worker at a
known moment. Reading the variable costs one dict lookup when it is unset.
"""

from __future__ import annotations

import logging
import os
import time

logger = logging.getLogger(__name__)


def _parse(spec: str) -> dict[str, float]:
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        kind, _, value = action.partition(":")
        if kind == "sleep":
            points[name] = float(value or 0)
    return points


_POINTS = _parse(os.environ.get("ISOTOPE_FAILPOINTS", ""))


def failpoint(name: str) -> None:
    delay = _POINTS.get(name)
    if delay:
        logger.warning("failpoint %s: sleeping %ss", name, delay)
        time.sleep(delay)
