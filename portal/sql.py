"""Hand-written reads for the hot paths, returning what the ORM would return.

Building and compiling a queryset costs more CPU than PostgreSQL spends answering it:
0.3-0.8 ms per read on these machines against about 0.1 ms for the same statement
written out (bench/README.md, ``accept_cpu``). A VM create reads a dozen rows before it
writes, so the reads on its path are written here as SQL conditions over a model's
columns; the rows come back as model instances with every concrete field loaded and
converted as the ORM converts them (JSON, decimals, UUIDs and times on SQLite too).

Only identifiers the code names and ``%s`` placeholders go into the SQL text; values
are always parameters.
"""

from __future__ import annotations

from functools import cache
from typing import TypeVar

from django.db import connections, models

M = TypeVar("M", bound=models.Model)


@cache
def _shape(model: type[models.Model], using: str) -> tuple[str, list[str], list]:
    """The model's column list (qualified by its table), attribute names and, per
    column, the converters the ORM applies to values read from database ``using``."""
    connection = connections[using]
    table = model._meta.db_table
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(f"{quote(table)}.{quote(field.column)}" for field in fields)
    converters = []
    for field in fields:
        column = field.get_col(table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        converters.append((column, found))
    return columns, [field.attname for field in fields], converters


def select(
    model: type[M],
    where: str,
    params: list | tuple = (),
    *,
    order_by: str = "",
    limit: int | None = None,
    using: str = "default",
    for_update: bool = False,
    annotate: dict[str, tuple[str, list]] | None = None,
) -> list[M]:
    """Instances of ``model`` whose rows satisfy ``where`` (SQL over the model's own
    columns, ``%s`` for each of ``params``), in ``order_by`` (SQL) when given.
    ``annotate``: attribute name → (SQL expression, its params), set on each instance
    as the ORM's ``annotate`` would (the value as the driver returns it)."""
    connection = connections[using]
    columns, names, converters = _shape(model, using)
    table = connection.ops.quote_name(model._meta.db_table)
    extra = list((annotate or {}).items())
    for _, (expression, _) in extra:
        columns += f", {expression}"
    params = [value for _, (_, values) in extra for value in values] + list(params)
    sql = f"SELECT {columns} FROM {table} WHERE {where}"  # noqa: S608
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = []
    count = len(names)
    for row in rows:
        values = list(row[:count])
        for index, (column, functions) in enumerate(converters):
            for function in functions:
                values[index] = function(values[index], column, connection)
        instance = model.from_db(using, names, values)
        for (name, _), value in zip(extra, row[count:], strict=True):
            setattr(instance, name, value)
        found.append(instance)
    return found


def first(
    model: type[M],
    where: str,
    params: list | tuple = (),
    *,
    order_by: str = "",
    using: str = "default",
) -> M | None:
    """The first instance ``select`` finds (in ``order_by``), or None."""
    rows = select(model, where, params, order_by=order_by, limit=1, using=using)
    return rows[0] if rows else None


def exists(
    model: type[models.Model], where: str, params: list | tuple = (), *, using: str = "default"
) -> bool:
    """Whether any row of ``model`` satisfies ``where``."""
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE {where} LIMIT 1", list(params))  # noqa: S608
        return cursor.fetchone() is not None


def values(sql: str, params: list | tuple = (), *, using: str = "default") -> list[tuple]:
    """The rows of a written-out statement, as the database driver returns them."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def placeholders(items) -> str:
    """``%s, %s, …``: one placeholder per item (an ``IN`` list; never empty)."""
    count = len(items)
    if not count:
        raise ValueError("an empty IN list")
    return ", ".join(["%s"] * count)
