"""Django's PostgreSQL backend, its batches sized for values sent apart from the SQL.

With server-side binding (``ISOTOPE_DB_PREPARE``, portal/settings.py) one statement takes
at most 65,535 values: the protocol counts them in 16 bits. Django's PostgreSQL backend
sizes no batch, so a delete that cascades over more rows than that (Django reads the
related rows of all of them with one ``IN`` list: pruning 70,000 events with deliveries,
deleting a tenant with as many) or a bulk update of as many failed with "number of
parameters must be between 0 and 65535". Here every batch Django sizes
(``bulk_batch_size``: cascades, bulk updates and inserts) stays within it.
"""

from __future__ import annotations

from django.db.backends.postgresql import base
from django.db.backends.postgresql.operations import DatabaseOperations as _Operations

MAX_PARAMETERS = 65_535


class DatabaseOperations(_Operations):
    def bulk_batch_size(self, fields, objs):
        # Halved: a bulk update asks with its fields and the key twice, F + 2, but writes
        # 2F + 1 values per object (a WHEN key THEN value per field, the key in IN).
        return max(min(len(objs), MAX_PARAMETERS // (2 * max(len(fields), 1))), 1)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
