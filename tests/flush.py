"""A faster end for transactional tests: delete what a test wrote instead of Django's flush.

Loaded with ``-p tests.flush`` (pyproject.toml addopts). After each transactional test
(``transactional_db``, ``live_url``, ``django_db(transaction=True)``), Django's flush
truncates every table of every app, 71 of them, and then runs the ``post_migrate``
signal, which writes the content types and permissions back: about half a second on
these machines, for 458 tests of the suite. Here the same end is reached by deleting the
rows of the tables that have any (one statement finds them), usually a handful, with
the foreign-key checks deferred to the commit: about 40 ms.

The content types and permissions are left as they are when they are what the last flush
wrote (same rows, same ids): Django's flush would write the same rows again under new
ids. When a test changed them, or anything here fails, the test ends with Django's flush
as before. Tests with ``serialized_rollback``, ``available_apps``, another database or
another engine always do.
"""

from __future__ import annotations

from django.db import DatabaseError, connection, transaction

# What ``post_migrate`` writes back after a flush (django.contrib.contenttypes, .auth).
REFILLED = ("django_content_type", "auth_permission")

_django_teardown = None  # TransactionTestCase's own, kept by pytest_configure
_refilled_as_flushed: str | None = None  # their fingerprint after the last flush


def _fingerprint(cursor) -> str:
    """The refilled tables' rows, ids included, as one digest."""
    parts = " || ".join(
        f"(SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t.id)), '') FROM {table} t)"
        for table in REFILLED
    )
    cursor.execute(f"SELECT {parts}")
    return cursor.fetchone()[0]


def filled_tables(cursor) -> list[str]:
    """The Django tables that have rows, by name, found in one statement."""
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    quote = connection.ops.quote_name
    cursor.execute(
        " UNION ALL ".join(f"SELECT %s WHERE EXISTS (SELECT 1 FROM {quote(t)})" for t in tables),
        tables,
    )
    return sorted(row[0] for row in cursor.fetchall())


def _delete_written(test) -> bool:
    """Empty every table but the refilled ones, when those are as the last flush left
    them; whether it did (nothing changed when it did not)."""
    if (
        _refilled_as_flushed is None
        or test.serialized_rollback
        or test.available_apps is not None
        or list(test._databases_names(include_mirrors=False)) != ["default"]
        or connection.vendor != "postgresql"
        or connection.in_atomic_block
    ):
        return False
    quote = connection.ops.quote_name
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if _fingerprint(cursor) != _refilled_as_flushed:
                return False
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            for table in filled_tables(cursor):
                if table not in REFILLED:
                    cursor.execute(f"DELETE FROM {quote(table)}")
    except DatabaseError:
        return False
    return True


def _fixture_teardown(self) -> None:
    global _refilled_as_flushed
    if _delete_written(self):
        return
    _django_teardown(self)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _refilled_as_flushed = _fingerprint(cursor)


def pytest_configure(config) -> None:
    global _django_teardown
    from django.test import TransactionTestCase

    _django_teardown = TransactionTestCase._fixture_teardown
    TransactionTestCase._fixture_teardown = _fixture_teardown
