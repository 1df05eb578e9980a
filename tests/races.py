"""Run an observer and a user's action against each other, many times, for real.

Both run in their own thread with their own database connection and are released by
one barrier, so their transactions really interleave (on PostgreSQL, in either order);
the main thread prepares each round and checks it while nothing runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def race(rounds: int, setup: Callable, observer: Callable, user: Callable, check: Callable):
    """``rounds`` times: ``setup()`` alone, then ``observer(state)`` and ``user(state)``
    released together by a barrier, then ``check(state)`` alone. ``state`` is the dict
    ``setup`` returned, with the two results under ``"observer"`` and ``"user"``."""
    start, done = threading.Barrier(3), threading.Barrier(3)
    state: dict = {}
    failures: list[BaseException] = []

    def loop(name: str, work: Callable) -> None:
        try:
            for _ in range(rounds):
                start.wait(60)
                try:
                    state[name] = work(state)
                except BaseException as error:  # reported by the main thread
                    failures.append(error)
                done.wait(60)
        except threading.BrokenBarrierError:
            pass  # the main thread stopped the race (a check failed)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=loop, args=("observer", observer)),
        threading.Thread(target=loop, args=("user", user)),
    ]
    for thread in threads:
        thread.start()
    try:
        for number in range(rounds):
            state.clear()
            state.update(setup())
            start.wait(60)
            done.wait(60)
            assert not failures, f"round {number}: {failures}"
            try:
                check(state)
            except AssertionError as error:
                raise AssertionError(f"round {number}: {error}") from error
    finally:
        start.abort()
        done.abort()
        for thread in threads:
            thread.join(timeout=60)
