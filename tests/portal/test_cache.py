"""portal.cache: the Redis cache shares one client per pool, across threads, and one pool
per process, across requests."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import override_settings

from portal.asgi import application
from tenants.services import token_create
from tests.asgi_request import asgi_request

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


class _CountingConnection(redis.Connection):
    """A real connection to the test Redis that counts how often one is opened."""

    opened = 0

    def _connect(self):
        type(self).opened += 1
        return super()._connect()


@pytest.mark.django_db(transaction=True)
def test_api_requests_in_contexts_of_their_own_share_the_caches_redis_connection():
    # Under uvicorn every request runs in a context of its own, where Django builds its
    # cache backend anew; each token request reads the failure throttle from the cache.
    user = get_user_model().objects.create_user("cache-conn", password=uuid.uuid4().hex)
    _, key = token_create(user=user, name="conn")
    caches_setting = {
        **settings.CACHES,
        "default": {
            **settings.CACHES["default"],
            # Options of this test's own: a pool of its own, counted.
            "OPTIONS": {"connection_class": _CountingConnection, "client_name": "conn-test"},
        },
    }
    auth = [(b"authorization", f"Token {key}".encode())]
    with override_settings(CACHES=caches_setting):
        with ThreadPoolExecutor(max_workers=1) as pool:  # a loop of its own per request
            statuses = [
                pool.submit(
                    asyncio.run, asgi_request(application, "GET", "/api/v1/tenants/", b"", auth)
                ).result()[0]
                for _ in range(10)
            ]
    assert statuses == [200] * 10
    assert _CountingConnection.opened == 1
