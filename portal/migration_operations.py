"""Migration operations of our own, imported by the apps' migration files (keep them
importable: applied migrations still load).

``AlterFields`` is Django's ``AlterField`` for many fields of many models at once. The
verbose-name migrations alter ~570 fields; as single ``AlterField`` operations each one
re-rendered its model and the models related to it (all of them, for a foreign key),
which made ``migrate`` on an empty database take a minute and a data-migration test that
goes back and forth three. The state and the schema changes are those of the
``AlterField`` list it replaced; the models are re-rendered once per migration.

``drop_indexes`` is the database side of fields whose own index goes (``db_index=False``
in the state, through ``SeparateDatabaseAndState``): ``DROP INDEX`` and nothing else.
Django's ``AlterField`` of a foreign key's ``db_index`` also drops and re-adds the key's
constraint, which checks every row of the table under exclusive locks on it and on the
table it refers to, and of a text column it drops every index on the column, a partial
unique one included, without making it again.
"""

from __future__ import annotations

from django.db.migrations.operations.base import Operation, OperationCategory
from django.db.migrations.operations.special import RunPython
from django.db.migrations.utils import field_is_referenced


class AlterFields(Operation):
    """Fields of one or more models take new definitions: ``models`` maps a model name to
    ``[(field name, field), ...]``. The same as one ``AlterField(model, name, field)``
    per entry, in that order (``preserve_default=True``), with one re-render."""

    category = OperationCategory.ALTERATION
    reversible = True

    def __init__(self, models):
        self.models = {model: list(fields) for model, fields in models.items()}
        for model, fields in self.models.items():
            names = [name for name, _ in fields]
            if len(set(names)) != len(names):
                raise ValueError(f"AlterFields: a field of {model!r} is listed twice")
        super().__init__()

    def deconstruct(self):
        return (self.__class__.__name__, [], {"models": self.models})

    def state_forwards(self, app_label, state):
        # As ProjectState.alter_field for each field, with one reload at the end.
        delay = True
        for model, fields in self.models.items():
            model_key = app_label, model.lower()
            current = state.models[model_key].fields
            for name, field in fields:
                if state._relations is not None:
                    old_field = current.pop(name)
                    if old_field.is_relation:
                        state.resolve_model_field_relations(model_key, name, old_field)
                    current[name] = field
                    if field.is_relation:
                        state.resolve_model_field_relations(model_key, name, field)
                else:
                    current[name] = field
                if field.is_relation or field_is_referenced(state, model_key, (name, field)):
                    delay = False
        state.reload_models([(app_label, model.lower()) for model in self.models], delay=delay)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        for model, fields in self.models.items():
            to_model = to_state.apps.get_model(app_label, model)
            if not self.allow_migrate_model(schema_editor.connection.alias, to_model):
                continue
            from_model = from_state.apps.get_model(app_label, model)
            for name, _ in fields:
                # A new verbose name or help text alone is no SQL: Django compares the
                # two fields' database-relevant attributes.
                schema_editor.alter_field(
                    from_model, from_model._meta.get_field(name), to_model._meta.get_field(name)
                )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self.database_forwards(app_label, schema_editor, from_state, to_state)

    def describe(self):
        count = sum(len(fields) for fields in self.models.values())
        return f"Alter {count} fields of {', '.join(self.models)}"

    @property
    def migration_name_fragment(self):
        return "alter_fields"


def drop_indexes(*indexes: tuple[str, str, str]) -> RunPython:
    """Drop each ``(index, table, column)``; backwards, make it again. A column given as
    ``"name varchar_pattern_ops"`` is PostgreSQL's LIKE index, made again there only.
    Each statement takes its table's lock for an instant (no scan); in a migration that
    is not atomic, each is its own transaction."""

    def forwards(apps, schema_editor):
        for name, _table, _column in indexes:
            schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")

    def backwards(apps, schema_editor):
        postgresql = schema_editor.connection.vendor == "postgresql"
        quote = schema_editor.quote_name
        for name, table, column in indexes:
            column, _, opclass = column.partition(" ")
            if opclass and not postgresql:
                continue
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} "
                f"({quote(column)}{' ' + opclass if opclass else ''})"
            )

    return RunPython(forwards, backwards, elidable=False)
