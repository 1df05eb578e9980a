"""Run writers against each other for real: an observer and a user's action released
together many times (:func:`race`), or a transaction held open until another one waits
on its locks (:func:`held_open`), so that a given interleaving is certain.

Every writer runs in its own thread with its own database connection (PostgreSQL).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager

from django.db import connection, transaction

from tests.conftest import wait_for


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


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@contextmanager
def held_open(work: Callable):
    """Run ``work()`` in a transaction in another thread and keep it open; the body gets
    ``commit()``, which waits until PostgreSQL shows another transaction waiting on a
    lock (the one the body started, blocked by ``work``'s writes), then commits."""
    created, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def create() -> None:
        try:
            with transaction.atomic():
                work()
                created.set()
                release.wait(30)
        except BaseException as error:
            failures.append(error)
        finally:
            created.set()
            connection.close()

    thread = threading.Thread(target=create)
    thread.start()
    assert created.wait(30)

    def commit_once_the_second_waits() -> None:
        wait_for(waiting_on_a_lock, 30, 0.02, message="nothing waited on the held transaction")
        release.set()

    try:
        yield commit_once_the_second_waits
    finally:
        release.set()
        thread.join(timeout=30)
    assert not failures, failures


def run_in_thread(work) -> dict:
    outcome: dict = {}

    def body() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    outcome["thread"] = thread
    return outcome
