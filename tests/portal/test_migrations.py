"""The migrations: they describe the models exactly, and ``AlterFields`` (the batched
``AlterField`` the verbose-name migrations use) changes state and columns as
``AlterField`` does."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, migrations, models
from django.db.migrations.state import ProjectState

from portal.migration_operations import AlterFields

pytestmark = pytest.mark.unit

APP = "probe"


def test_the_migrations_leave_nothing_for_makemigrations_to_write(db):
    out = StringIO()
    # --check exits non-zero when the models and the migrations' final state differ.
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def column_length(table: str, column: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT character_maximum_length FROM information_schema.columns "
            "WHERE table_name = %s AND column_name = %s",
            [table, column],
        )
        return cursor.fetchone()[0]


def apply(operation, state: ProjectState) -> ProjectState:
    after = state.clone()
    operation.state_forwards(APP, after)
    with connection.schema_editor() as editor:
        operation.database_forwards(APP, editor, state, after)
    return after


def test_alter_fields_relabels_and_resizes_columns_and_goes_back(db):
    create = migrations.CreateModel(
        "Shelf",
        fields=[
            ("id", models.AutoField(primary_key=True)),
            ("label", models.CharField(max_length=10)),
            ("note", models.CharField(max_length=5)),
        ],
    )
    made = apply(create, ProjectState())
    alter = AlterFields(
        {
            "Shelf": [
                ("label", models.CharField(max_length=40, verbose_name="shelf label")),
                ("note", models.CharField(max_length=5, help_text="free text")),
            ]
        }
    )
    altered = apply(alter, made)

    shelf = altered.apps.get_model(APP, "Shelf")._meta
    assert shelf.get_field("label").verbose_name == "shelf label"
    assert shelf.get_field("note").help_text == "free text"
    assert column_length("probe_shelf", "label") == 40
    assert column_length("probe_shelf", "note") == 5

    # Unapplied, as the migration executor does: the column shrinks back.
    with connection.schema_editor() as editor:
        alter.database_backwards(APP, editor, altered, made)
    assert column_length("probe_shelf", "label") == 10
    assert made.apps.get_model(APP, "Shelf")._meta.get_field("label").verbose_name == "label"


def test_alter_fields_refuses_a_field_listed_twice():
    field = models.CharField(max_length=3)
    with pytest.raises(ValueError, match="a field of 'Shelf' is listed twice"):
        AlterFields({"Shelf": [("label", field), ("label", field)]})
