"""Django's PostgreSQL backend, its batches sized for values sent apart from the SQL.

With server-side binding (``ISOTOPE_DB_PREPARE``, portal/settings.py) one statement takes
at most 65,535 values: the protocol counts them in 16 bits. Django's PostgreSQL backend
sizes no batch, so a delete that cascades over more rows than that (Django reads the
related rows of all of them with one ``IN`` list: pruning 70,000 events with deliveries,
deleting a tenant with as many) or a bulk update of as many failed with "number of
parameters must be between 0 and 65535". Here every batch Django sizes
(``bulk_batch_size``: cascades, bulk updates and inserts) stays within it.

psycopg turns a statement's ``%s`` into PostgreSQL's ``$1, $2, …`` once and keeps the
result (128 statements, least recently used first out), but only for a statement of at
most 4,096 bytes and 50 values; a longer one is converted again on every run. A VM
create's rows go in as one statement (``portal.sql.batch``): about 3,000 bytes and 85
values, more with networks or a disk, the same text from create to create, and its
conversion took about 0.45 ms of the create's CPU, every time. ``CACHED_STATEMENT_BYTES``
and ``CACHED_STATEMENT_VALUES`` raise those limits (psycopg's module settings, read at
every execution, in its private ``_queries``: pinned in requirements.txt, and skipped
with a warning if a version no longer has them). At these sizes an entry takes up to
about 60 KB: some 8 MB for a full cache, twice that with the debug query log (which
converts each statement again, client-side). Statements of up to 256 values whose text
varies (long ``IN`` lists) now take places in the cache too; bulk statements, with more
values, are still converted afresh.

A statement without values (a migration's DDL, a script of several commands) is never
prepared (``ServerBindingCursor``): with ``ISOTOPE_DB_PREPARE=0`` psycopg prepared every
statement at its first run, and ``migrate`` stopped at the first script of several
commands ("cannot insert multiple commands into a prepared statement").
"""

from __future__ import annotations

import warnings

import psycopg._queries
from django.db.backends.postgresql import base
from django.db.backends.postgresql.operations import DatabaseOperations as _Operations

MAX_PARAMETERS = 65_535
CACHED_STATEMENT_BYTES = 16_384
CACHED_STATEMENT_VALUES = 256

for _name, _value in (
    ("MAX_CACHED_STATEMENT_LENGTH", CACHED_STATEMENT_BYTES),
    ("MAX_CACHED_STATEMENT_PARAMS", CACHED_STATEMENT_VALUES),
):
    if isinstance(getattr(psycopg._queries, _name, None), int):
        setattr(psycopg._queries, _name, max(getattr(psycopg._queries, _name), _value))
    else:
        warnings.warn(
            f"psycopg {psycopg.__version__} has no _queries.{_name}: its statement "
            "cache keeps its own limits (portal/postgresql/base.py)",
            stacklevel=1,
        )


class DatabaseOperations(_Operations):
    def bulk_batch_size(self, fields, objs):
        # Halved: a bulk update asks with its fields and the key twice, F + 2, but writes
        # 2F + 1 values per object (a WHEN key THEN value per field, the key in IN).
        return max(min(len(objs), MAX_PARAMETERS // (2 * max(len(fields), 1))), 1)


class ServerBindingCursor(base.ServerBindingCursor):
    """Django's cursor for values sent apart from the SQL, which leaves a statement
    without values to PostgreSQL's simple protocol: never prepared, and it may hold
    several commands."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        if not params and prepare is None:
            prepare = False
        return super().execute(query, params, prepare=prepare, binary=binary)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def get_connection_params(self):
        params = super().get_connection_params()
        if params.get("cursor_factory") is base.ServerBindingCursor:
            params["cursor_factory"] = ServerBindingCursor
        return params
