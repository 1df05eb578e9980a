"""portal.cache: the Redis cache shares one client per pool, across threads."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache

pytestmark = [pytest.mark.unit]


def test_the_cache_keeps_one_client_and_is_exact_from_many_threads():
    key = f"test-cache-{uuid.uuid4().hex}"
    assert cache._cache.get_client(write=True) is cache._cache.get_client(write=True)
    cache.set(key, 0, 60)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: cache.incr(key), range(400)))
        assert cache.get(key) == 400
        assert cache.add(key, 1, 60) is False  # present: not replaced
        assert cache.get(key) == 400
    finally:
        cache.delete(key)
    assert cache.get(key) is None
