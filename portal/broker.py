"""kombu's Redis transport, with one synchronous Redis client per channel.

kombu's Redis channel builds a new ``redis.Redis`` for every message it publishes
(``conn_or_acquire``); with redis-py 8 that object copies its table of ~170 response
callbacks on construction, about a quarter of the CPU of enqueueing a task (every VM
create enqueues one on commit: bench/README.md, ``accept_cpu``). A ``redis.Redis`` is
safe to share between threads (each command takes a connection from the channel's
pool), so the channel keeps one. The asynchronous client (the worker's ``BRPOP``) is
kombu's own, unchanged.

Selected in settings (``CELERY_BROKER_TRANSPORT``) for ``redis://`` broker URLs only;
``rediss://`` and others keep kombu's transport as it is.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
