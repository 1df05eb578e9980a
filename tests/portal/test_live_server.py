"""The test live server (tests/conftest.py ``live_server``) leaves no database connection
behind: one held by a server thread kept pytest-django from dropping the test database
at the end of the run ("database ... is being accessed by other users")."""

from __future__ import annotations

import urllib.request

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests.conftest import live_server, postgres_only, wait_for

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


def other_backends() -> set[int]:
    """Sessions on the test database other than this thread's own, by backend pid."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in cursor.fetchall()}


def test_connections_opened_by_the_server_s_threads_are_closed_when_it_stops():
    postgres_only()
    held = []

    async def app(scope, receive, send):
        # Like a consumer that keeps its worker thread's connection: nothing in the
        # request cycle closes it.
        def query() -> None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            held.append(connection.connection)

        await sync_to_async(query, thread_sensitive=False)()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    # Other tests' sessions (a session-wide worker, a web tier still hanging up) are
    # theirs: only the server's own backend, known by its pid, counts.
    with live_server(app) as url:
        assert urllib.request.urlopen(url).read() == b"ok"  # noqa: S310 - our loopback URL
        assert held
        pid = held[0].info.backend_pid
        assert pid in other_backends()
    assert held[0].closed
    # The backend process exits a moment after its client hangs up.
    wait_for(
        lambda: pid not in other_backends(), 10, message="the server's connection is still open"
    )
