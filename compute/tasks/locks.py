"""One task at a time per object: a Redis lock (the cache) that expires, so a worker
killed while holding it blocks nobody for longer than its timeout."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache


class Busy(Exception):
    """Another task holds the lock."""


@contextmanager
def task_lock(key: str, seconds: int) -> Iterator[None]:
    """Hold ``key`` for at most ``seconds`` or raise :class:`Busy` at once; released on
    exit only if it is still ours (an expired lock may belong to another task now)."""
    token = secrets.token_hex(8)
    if not cache.add(key, token, timeout=seconds):
        raise Busy
    try:
        yield
    finally:
        if cache.get(key) == token:
            cache.delete(key)
