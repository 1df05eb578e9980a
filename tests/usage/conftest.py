"""Usage fixtures: a clock the tests move (time-machine), the compute fixtures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from tests.compute.conftest import flavors, make_host, tiny_image  # noqa: F401


def at(text: str) -> datetime:
    """``"2026-03-02 10:17"`` → that UTC moment."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def clock():
    """``clock("2026-03-02 10:17")`` moves the frozen clock there (and keeps it)."""
    traveller = None

    def move(text: str) -> datetime:
        nonlocal traveller
        if traveller is not None:
            traveller.stop()
        traveller = time_machine.travel(at(text), tick=False)
        traveller.start()
        return at(text)

    yield move
    if traveller is not None:
        traveller.stop()
