"""Fixtures for monitoring tests: a clean Redis for sequence numbers and snapshots."""

from __future__ import annotations

import pytest

from monitoring import live
from tests.compute.conftest import make_host, tiny_image  # noqa: F401 - metrics tests use them


@pytest.fixture(autouse=True)
def clean_live_keys():
    """Sequence numbers, snapshots and channel-layer groups of a previous test must not
    leak into this one (the suite owns its Redis database)."""

    def wipe() -> None:
        client = live.redis_client()
        for pattern in ("isotope:live:*", "isotope:ch*"):
            keys = list(client.scan_iter(pattern, count=500))
            if keys:
                client.delete(*keys)

    wipe()
    yield
    wipe()
