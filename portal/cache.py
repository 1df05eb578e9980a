"""Django's Redis cache, with one connection pool and one Redis client per server for the
whole process.

Django keeps a cache backend per context (``django.core.cache.caches`` is an asgiref
``Local``): under ASGI every request runs in a context of its own, so every request
builds a new backend, with a new ``redis.ConnectionPool`` and so a new TCP connection to
Redis, for its first cache operation (every API request reads the token throttle). The
pools here are kept per process, keyed by server and options, so requests share their
connections as they share PostgreSQL's pool (Django's open ticket on this: PR 18459).

``django.core.cache.backends.redis.RedisCacheClient.get_client`` also builds a new
``redis.Redis`` for every cache operation; with redis-py 8 that object copies its table
of ~170 response callbacks on construction, which costs about as much CPU as the
operation's round trip. A ``redis.Redis`` is safe to share between threads (each
command takes a connection from the pool), so one per pool is kept and reused.

redis-py's pools notice a fork (gunicorn's workers) and start afresh in the child.
"""

from __future__ import annotations

import threading

from django.core.cache.backends import redis as django_redis

_lock = threading.Lock()
# (pool class, server, options) → the one client of the process, on its pool.
_clients: dict[tuple, object] = {}


class RedisCacheClient(django_redis.RedisCacheClient):
    def _get_connection_pool(self, write):
        return self.get_client(write=write).connection_pool

    def get_client(self, key=None, *, write=False):
        server = self._servers[self._get_connection_pool_index(write)]
        shared = (self._pool_class, server, repr(sorted(self._pool_options.items())))
        client = _clients.get(shared)
        if client is None:
            with _lock:
                client = _clients.get(shared)
                if client is None:
                    pool = self._pool_class.from_url(server, **self._pool_options)
                    client = _clients[shared] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with ``RedisCacheClient``."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
