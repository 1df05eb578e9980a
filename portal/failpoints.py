"""Fault injection for chaos tests, off unless ``ISOTOPE_FAILPOINTS`` names a point.

``ISOTOPE_FAILPOINTS="provision.after_define=sleep:5,image.after_fetch=raise"`` makes
``failpoint("provision.after_define")`` sleep 5 s (so a test can kill a worker at a known
moment) and ``failpoint("image.after_fetch")`` raise :class:`FailpointError` (an
unexpected error in the middle of an operation). Tests in one process use
:func:`armed`, and :func:`hits` says how often an armed point was reached since. Reading
the table costs one dict lookup when nothing is armed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


class FailpointError(RuntimeError):
    """Raised by a failpoint armed with ``raise``."""


def _parse(spec: str) -> dict[str, str]:
    points: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        if action.startswith("sleep") or action == "raise":
            points[name] = action
    return points


_POINTS = _parse(os.environ.get("ISOTOPE_FAILPOINTS", ""))
_HITS: dict[str, int] = {}


def failpoint(name: str) -> None:
    action = _POINTS.get(name)
    if not action:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    kind, _, value = action.partition(":")
    if kind == "raise":
        logger.warning("failpoint %s: raising", name)
        raise FailpointError(f"failpoint {name}")
    delay = float(value or 0)
    if delay:
        logger.warning("failpoint %s: sleeping %ss", name, delay)
        time.sleep(delay)


@contextmanager
def armed(name: str, action: str) -> Iterator[None]:
    """Arm ``name`` with ``action`` (``raise`` or ``sleep:<s>``) in this process."""
    previous = _POINTS.get(name)
    _HITS[name] = 0
    _POINTS[name] = action
    try:
        yield
    finally:
        if previous is None:
            _POINTS.pop(name, None)
        else:
            _POINTS[name] = previous


def hits(name: str) -> int:
    """How many times an armed ``name`` was reached since :func:`armed` armed it."""
    return _HITS.get(name, 0)
