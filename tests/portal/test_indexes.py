"""No index of ours that another index makes redundant: every row written updates every
index of its table, so an index whose columns (in order, with the same operator class
and sort) begin another one costs each insert and each non-HOT update and serves no
query the other does not. A foreign key's own index is the usual one (its column leads
a unique constraint or a composite index already). Nor a pattern-matching index (the
second one Django adds for an indexed text column) on a column of fixed choices, such as
a phase: nothing matches those with LIKE."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

from tests.conftest import postgres_only

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

OURS = ("portal", "identity", "tenants", "compute", "monitoring", "usage")

# (index, the index that covers it) per table, for whole, unconditional indexes on
# plain columns: a partial or expression index covers no general query.
REDUNDANT = """
SELECT a.indrelid::regclass::text, a.indexrelid::regclass::text, b.indexrelid::regclass::text
FROM pg_index a
JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
WHERE a.indrelid::regclass::text = ANY(%s)
  AND NOT a.indisunique
  AND a.indpred IS NULL AND b.indpred IS NULL
  AND a.indexprs IS NULL AND b.indexprs IS NULL
  AND a.indnkeyatts <= b.indnkeyatts
  AND (a.indkey::int2[])[0:a.indnkeyatts - 1] = (b.indkey::int2[])[0:a.indnkeyatts - 1]
  AND (a.indclass::oid[])[0:a.indnkeyatts - 1] = (b.indclass::oid[])[0:a.indnkeyatts - 1]
  AND (a.indoption::int2[])[0:a.indnkeyatts - 1] = (b.indoption::int2[])[0:a.indnkeyatts - 1]
  AND (a.indnkeyatts < b.indnkeyatts OR b.indisunique OR a.indexrelid > b.indexrelid)
ORDER BY 1, 2, 3
"""


def our_models() -> dict[str, type]:
    """Our models by table, without the join tables Django makes for a many-to-many
    field (their indexes are Django's)."""
    return {
        model._meta.db_table: model
        for model in apps.get_models(include_auto_created=False)
        if model._meta.app_label in OURS and model._meta.managed
    }


def our_tables() -> list[str]:
    return sorted(our_models())


def redundant_indexes(tables: list[str]) -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(REDUNDANT, [tables])
        return [tuple(row) for row in cursor.fetchall()]


def test_no_index_of_ours_is_the_beginning_of_another():
    postgres_only()
    tables = our_tables()
    assert "compute_virtualmachine" in tables
    found = redundant_indexes(tables)
    assert found == [], "\n".join(f"{t}: {a} is covered by {b}" for t, a, b in found)


def test_the_query_finds_a_redundant_index():
    """The check itself: an index on the leading column of a composite one is found,
    and a partial one is not counted as covering."""
    postgres_only()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE isotope_index_probe (a int, b int, c int)")
        cursor.execute("CREATE INDEX isotope_probe_ab ON isotope_index_probe (a, b)")
        cursor.execute("CREATE INDEX isotope_probe_a ON isotope_index_probe (a)")
        cursor.execute("CREATE INDEX isotope_probe_c ON isotope_index_probe (c)")
        cursor.execute("CREATE INDEX isotope_probe_cb ON isotope_index_probe (c, b) WHERE b > 0")
    assert redundant_indexes(["isotope_index_probe"]) == [
        ("isotope_index_probe", "isotope_probe_a", "isotope_probe_ab")
    ]


PATTERN_INDEXES = """
SELECT c.relname, a.attname, i.indexrelid::regclass::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_opclass o ON o.oid = ANY(i.indclass::oid[])
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
WHERE c.relname = ANY(%s) AND o.opcname IN ('varchar_pattern_ops', 'text_pattern_ops')
ORDER BY 1, 2
"""


def test_no_column_of_fixed_choices_has_a_pattern_matching_index():
    postgres_only()
    models = our_models()
    with connection.cursor() as cursor:
        cursor.execute(PATTERN_INDEXES, [sorted(models)])
        found = cursor.fetchall()
    columns = {(table, column) for table, column, _ in found}
    assert ("tenants_auditlog", "action") in columns  # the query sees them
    choices = [
        f"{table}.{column}: {index}"
        for table, column, index in found
        if any(f.column == column and f.choices for f in models[table]._meta.concrete_fields)
    ]
    assert choices == []


def test_every_declared_index_and_constraint_is_in_the_database_and_every_key_indexed():
    """What the models declare is what the migrations made (a migration that dropped a
    field's index once dropped a partial unique constraint on the column with it), and
    every foreign key still leads some whole index (so a delete of the row it points to,
    and a filter on it, reads an index), once its own index is gone."""
    postgres_only()
    missing, unindexed = [], []
    with connection.cursor() as cursor:
        for model in our_models().values():
            meta = model._meta
            found = connection.introspection.get_constraints(cursor, meta.db_table)
            for declared in [*meta.indexes, *meta.constraints]:
                if declared.name not in found:
                    missing.append(f"{meta.db_table}: {declared.name}")
            cursor.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
                " WHERE i.indrelid = %s::regclass AND i.indpred IS NULL",
                [meta.db_table],
            )
            whole = {name for (name,) in cursor.fetchall()}
            for field in meta.concrete_fields:
                if field.is_relation and field.column not in whole:
                    unindexed.append(f"{meta.db_table}.{field.column}")
    assert missing == []
    assert unindexed == []
