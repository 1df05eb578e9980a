"""Hand-written reads and inserts for the hot paths, doing what the ORM would do.

Building and compiling a queryset costs more CPU than PostgreSQL spends answering it:
0.3-0.8 ms per read on these machines against about 0.1 ms for the same statement
written out (bench/README.md, ``accept_cpu``). A VM create reads a dozen rows before it
writes, so the reads on its path are written here as SQL conditions over a model's
columns; the rows come back as model instances with every concrete field loaded and
converted as the ORM converts them (JSON, decimals, UUIDs and times on SQLite too).
The rows a create writes (the object, its reservation, usage subject and interval, audit
entry and event) go in through ``insert`` and ``insert_later``: the statement is built
once per model, the values are prepared as the ORM prepares them, and inside a ``batch``
they are written together, one statement of ``INSERT``s in a ``WITH``.

Only identifiers the code names and ``%s`` placeholders go into the SQL text; values
are always parameters.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import timedelta
from functools import cache
from typing import TypeVar

from django.db import connections, models, transaction
from django.db.models import NOT_PROVIDED, signals

M = TypeVar("M", bound=models.Model)


@cache
def _shape(model: type[models.Model], using: str, alias: str) -> tuple[str, list[str], list]:
    """The model's column list (qualified by ``alias``, its table or a join's name),
    attribute names and, per column, the converters the ORM applies to values read
    from database ``using``."""
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(f"{quote(alias)}.{quote(field.column)}" for field in fields)
    converters = []
    for field in fields:
        column = field.get_col(alias)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        converters.append((column, found))
    return columns, [field.attname for field in fields], converters


def _instance(model, using: str, names: list[str], converters: list, values, connection):
    values = list(values)
    for index, (column, functions) in enumerate(converters):
        for function in functions:
            values[index] = function(values[index], column, connection)
    return model.from_db(using, names, values)


def _setter(name: str):
    def put(instance, value) -> None:
        setattr(instance, name, value)

    return put


def select(
    model: type[M],
    where: str,
    params: list | tuple = (),
    *,
    related: tuple[str, ...] = (),
    order_by: str = "",
    limit: int | None = None,
    using: str = "default",
    for_update: bool = False,
    annotate: dict[str, tuple[str, list]] | None = None,
    join: tuple[str, list] | None = None,
    attach: dict[str, type[models.Model]] | None = None,
) -> list[M]:
    """Instances of ``model`` whose rows satisfy ``where`` (SQL over the model's own
    columns, ``%s`` for each of ``params``), in ``order_by`` (SQL) when given.

    ``related``: foreign keys read in the same statement, as ``select_related`` would
    (one level; each is joined as a table named after the field, so ``where`` and
    ``order_by`` must then qualify the model's columns by its table name).
    ``for_update`` locks the model's rows only. ``annotate``: attribute name → (SQL
    expression, its params), set on each instance as the ORM's ``annotate`` would
    (the value as the driver returns it). ``join``: SQL (and its params) placed after
    the joins, such as a ``LEFT OUTER JOIN`` of a derived table whose columns the
    annotations read (``where`` and ``order_by`` then qualify the model's columns).
    ``attach``: alias → model of a row that ``join`` joins under that alias (one at
    most per row, not a foreign key of the model's): its columns are read too and the
    instance (None where the join found no row) set on each instance as attribute
    ``alias``."""
    connection = connections[using]
    quote = connection.ops.quote_name
    table = model._meta.db_table
    columns, names, converters = _shape(model, using, table)
    # (set it on the instance, model, its shape, where its key is), in column order
    joins, shapes = [], []
    for name in related:
        field = model._meta.get_field(name)
        target = field.related_model
        shape = _shape(target, using, name)
        key = shape[1].index(target._meta.pk.attname)
        shapes.append((field.set_cached_value, target, shape, key))
        columns += f", {shape[0]}"
        joined = f"{quote(name)}.{quote(field.target_field.column)}"
        joins.append(
            f" LEFT OUTER JOIN {quote(target._meta.db_table)} {quote(name)} ON "
            f"{joined} = {quote(table)}.{quote(field.column)}"
        )
    for alias, target in (attach or {}).items():
        shape = _shape(target, using, alias)
        key = shape[1].index(target._meta.pk.attname)
        shapes.append((_setter(alias), target, shape, key))
        columns += f", {shape[0]}"
    extra = list((annotate or {}).items())
    for _, (expression, _) in extra:
        columns += f", {expression}"
    if join is not None:
        joins.append(join[0])
    # In the order their placeholders come: the annotations', the join's, the where's.
    params = [
        *(value for _, (_, values) in extra for value in values),
        *(join[1] if join is not None else ()),
        *params,
    ]
    sql = f"SELECT {columns} FROM {quote(table)}{''.join(joins)} WHERE {where}"  # noqa: S608
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if for_update and connection.features.has_select_for_update:
        sql += f" FOR UPDATE OF {quote(table)}" if related else " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = []
    for row in rows:
        start = len(names)
        instance = _instance(model, using, names, converters, row[:start], connection)
        for put, target, (_, target_names, target_converters), key in shapes:
            values = row[start : start + len(target_names)]
            start += len(target_names)
            other = None
            if values[key] is not None:
                other = _instance(
                    target, using, target_names, target_converters, values, connection
                )
            put(instance, other)
        for (name, _), value in zip(extra, row[start:], strict=True):
            setattr(instance, name, value)
        found.append(instance)
    return found


def update(
    model: type[models.Model],
    pk,
    fields: dict,
    *,
    increment: tuple[str, ...] = (),
    using: str = "default",
) -> int:
    """``UPDATE`` the row of ``model`` with key ``pk``: each of ``fields`` (field name →
    value; a model instance for a foreign key) prepared for the database as the ORM's
    ``update`` prepares it, and each field in ``increment`` + 1 in the database. Returns
    the number of rows written (0: the row is gone). Values only, no expressions
    (``TypeError``: use the ORM for those)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    sets, params = [], []
    for name, value in fields.items():
        if hasattr(value, "resolve_expression"):
            raise TypeError(f"{name}: an expression; portal.sql writes values only")
        field = model._meta.get_field(name)
        if hasattr(value, "prepare_database_save"):
            value = value.prepare_database_save(field)
        sets.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    for name in increment:
        column = quote(model._meta.get_field(name).column)
        sets.append(f"{column} = {column} + 1")
    table, key = quote(model._meta.db_table), quote(model._meta.pk.column)
    statement = f"UPDATE {table} SET {', '.join(sets)} WHERE {key} = %s"  # noqa: S608
    # As the ORM's update: an error inside an atomic block marks it for rollback.
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(statement, [*params, pk])
        return cursor.rowcount


def first(model: type[M], where: str, params: list | tuple = (), **options) -> M | None:
    """The first instance ``select`` finds (in ``order_by``), or None; ``options`` are
    ``select``'s (``related``, ``for_update``, …)."""
    rows = select(model, where, params, limit=1, **options)
    return rows[0] if rows else None


def columns(model: type[models.Model], *, using: str = "default") -> str:
    """The model's columns, qualified by its table, in the order ``rows`` reads them
    (for a written-out statement's ``RETURNING``)."""
    return _shape(model, using, model._meta.db_table)[0]


def rows(model: type[M], statement: str, params: list | tuple = (), *, using: str = "default"):
    """Instances of ``model`` from a written-out statement whose result columns are
    ``columns(model)`` (an ``UPDATE … RETURNING``), converted as ``select`` converts
    them."""
    connection = connections[using]
    _, names, converters = _shape(model, using, model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))
        found = cursor.fetchall()
    return [_instance(model, using, names, converters, row, connection) for row in found]


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


def moment(value, *, using: str = "default"):
    """A datetime as a parameter compared with a ``DateTimeField``'s column: as the ORM
    passes it (SQLite stores them as text in its own format; PostgreSQL takes it as is)."""
    return connections[using].ops.adapt_datetimefield_value(value)


def clock(*, using: str = "default"):
    """The database server's time now (``clock_timestamp()``, not the transaction's
    start): one clock for every process on every machine, where two processes' readings
    of something outside the database are put in order. SQLite (one machine): this
    process's clock."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        from django.utils import timezone

        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def clock_anchored(*, using: str = "default"):
    """A clock for many readings in a row (a reconciler's pass): the database's time,
    read by the first call only (:func:`clock`), plus this process's monotonic time
    since that call. One statement however many times it is asked."""
    anchor: list = []

    def now():
        if not anchor:
            anchor.extend((clock(using=using), time.monotonic()))
        return anchor[0] + timedelta(seconds=time.monotonic() - anchor[1])

    return now


def deadlocked(error: BaseException) -> bool:
    """Whether ``error`` (Django's, from a statement) is PostgreSQL breaking a deadlock
    (SQLSTATE 40P01) by ending this transaction's statement. Rolled back, an outermost
    transaction holds nothing and can be tried again; rolled back to a savepoint, the
    locks taken before it are still held."""
    return getattr(error.__cause__, "sqlstate", None) == "40P01"


def placeholders(items) -> str:
    """``%s, %s, …``: one placeholder per item (an ``IN`` list; never empty)."""
    count = len(items)
    if not count:
        raise ValueError("an empty IN list")
    return ", ".join(["%s"] * count)


@cache
def _insert_statement(model: type[models.Model], using: str, with_key: bool):
    """The fields an ``INSERT`` of ``model`` writes, in order, its SQL and the field
    the database returns (the auto key, unless ``with_key``: the caller gave it)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = model._meta
    if meta.parents:
        raise TypeError(f"{meta.label}: multi-table inheritance; use the ORM")
    fields = [f for f in meta.local_concrete_fields if not getattr(f, "generated", False)]
    if any(f.db_default is not NOT_PROVIDED for f in fields):
        raise TypeError(f"{meta.label}: a database default; use the ORM")
    returned = None if with_key else meta.auto_field
    if returned is not None:
        fields = [f for f in fields if f is not returned]
    columns = ", ".join(quote(f.column) for f in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({placeholders(fields)})"
    )
    if returned is not None and connection.features.can_return_columns_from_insert:
        sql += f" RETURNING {quote(returned.column)}"
    return fields, sql, returned


@cache
def _insert_into(model: type[models.Model], using: str) -> str:
    """``_insert_statement``'s ``INSERT INTO table (columns)``, before its ``VALUES``."""
    return _insert_statement(model, using, False)[1].split(" VALUES ")[0]


def insert(instance: M, *, using: str = "default") -> M:
    """Write ``instance`` as a new row, as ``save(force_insert=True)`` would: each
    field's ``pre_save`` (``auto_now_add`` and ``auto_now`` times) and database
    preparation, the auto key read back. Values only (``TypeError`` for an expression).
    A model with ``pre_save`` or ``post_save`` receivers is saved by the ORM instead, so
    that they run."""
    return _insert(instance, using, None)[0]


def insert_with(
    instance: M, expression: str, params: list | tuple = (), *, using: str = "default"
) -> tuple[M, object]:
    """``insert``, and the value of one more SQL ``expression`` (such as a scalar
    subquery) from the same statement: returned with the row's key on a database that
    returns columns from an ``INSERT``, one round trip instead of two; read by a
    ``SELECT`` of its own after the row where not (or when the ORM saves the row). The
    expression reads other tables: what it would see of the new row differs between
    the two."""
    return _insert(instance, using, (expression, list(params)))


def _insert(instance, using: str, also: tuple[str, list] | None):
    model = type(instance)
    connection = connections[using]
    if _received(model):
        instance.save(force_insert=True, using=using)
        return instance, _select_value(connection, also)
    fields, sql, returned = _insert_statement(model, using, instance.pk is not None)
    params = _prepared(instance, fields, connection)
    returning = returned is not None and connection.features.can_return_columns_from_insert
    extra = None
    # As the ORM's save: an error inside an atomic block marks it for rollback.
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        if also is not None and returning:
            cursor.execute(f"{sql}, ({also[0]})", [*params, *also[1]])
            key, extra = cursor.fetchone()
        else:
            cursor.execute(sql, params)
            if returning:
                key = cursor.fetchone()[0]
            elif returned is not None:
                key = connection.ops.last_insert_id(cursor, model._meta.db_table, returned.column)
            if also is not None:
                extra = _select_value(connection, also)
        if returned is not None:
            setattr(instance, returned.attname, key)
    _saved(instance, using)
    return instance, extra


def _received(model) -> bool:
    """Whether saving ``model`` has receivers to run (then the ORM saves it)."""
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


def _saved(instance, using: str) -> None:
    """Mark ``instance`` as a row of database ``using``, as the ORM's save does."""
    instance._state.adding = False
    instance._state.db = using


def _select_value(connection, also: tuple[str, list] | None):
    if also is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({also[0]})", also[1])
        return cursor.fetchone()[0]


# --- Rows written together -------------------------------------------------------------
class _Row:
    """A row ``insert_later`` queued: its values prepared when it was queued, ``links``
    the fields whose value is the key of a row queued before it (that ``_Row``)."""

    __slots__ = ("also", "fields", "instance", "key", "links", "then", "values", "into")

    def __init__(self, instance, fields, values, into, key, links, also, then):
        self.instance, self.fields, self.values, self.into = instance, fields, values, into
        self.key, self.links, self.also, self.then = key, links, also, then


class _Batch:
    """The rows queued inside ``batch``, and the connection's execute wrapper that
    writes them before any other statement runs (what comes next reads them)."""

    def __init__(self, using: str):
        self.using = using
        self.rows: list[_Row] = []
        self.flushes = 0
        self.flushing = False

    def __call__(self, execute, statement, params, many, context):
        if self.rows and not self.flushing:
            if statement.startswith("ROLLBACK"):
                # A savepoint's rollback (Django's): the last statement before it, at
                # the latest its SAVEPOINT, wrote what was queued before it, so what is
                # queued now was queued inside it: dropped, not written and undone.
                self.rows.clear()
            else:
                self.flush()
        return execute(statement, params, many, context)

    def queued(self, instance) -> _Row | None:
        return next((row for row in self.rows if row.instance is instance), None)

    def flush(self) -> None:
        """Write the queued rows, one statement (an ``INSERT`` per row in a ``WITH``,
        a link as the parent's ``RETURNING``), then set their keys and run their
        ``then``s in the order they were queued."""
        rows, self.rows = self.rows, []
        if not rows:
            return
        self.flushes += 1
        connection = connections[self.using]
        position = {id(row): n for n, row in enumerate(rows)}
        # Only indexes and the models' own identifiers go into the text (S608).
        parts, params, picks = [], [], []
        for n, row in enumerate(rows):
            slots = []
            for field, value in zip(row.fields, row.values, strict=True):
                parent = row.links.get(field.attname)
                if parent is None:
                    slots.append("%s")
                    params.append(value)
                elif id(parent) in position:
                    slots.append(f"(SELECT k FROM r{position[id(parent)]})")  # noqa: S608
                else:  # written by an earlier flush: its key is known
                    slots.append("%s")
                    params.append(parent.instance.pk)
            returning = f"{connection.ops.quote_name(row.key.column)} AS k"
            picks.append(f"(SELECT k FROM r{n})")  # noqa: S608
            if row.also is not None:
                returning += f", ({row.also[0]}) AS a"
                params.extend(row.also[1])
                picks.append(f"(SELECT a FROM r{n})")  # noqa: S608
            # The INSERT's own VALUES list: each parameter takes its column's type.
            values = ", ".join(slots)
            parts.append(f"r{n} AS ({row.into} VALUES ({values}) RETURNING {returning})")
        statement = f"WITH {', '.join(parts)} SELECT {', '.join(picks)}"
        self.flushing = True
        try:
            with transaction.mark_for_rollback_on_error(self.using), connection.cursor() as cursor:
                cursor.execute(statement, params)
                found = list(cursor.fetchone())
        finally:
            self.flushing = False
        extras = []
        for row in rows:
            setattr(row.instance, row.key.attname, found.pop(0))
            extras.append(found.pop(0) if row.also is not None else None)
            _saved(row.instance, self.using)
        for row in rows:
            for attname, parent in row.links.items():
                _link(row.instance, attname, parent.instance)
        for row, extra in zip(rows, extras, strict=True):
            if row.then is not None:
                row.then(extra)


def _current(using: str) -> _Batch | None:
    return getattr(connections[using], "isotope_batch", None)


@contextmanager
def batch(*, using: str = "default"):
    """Rows queued by ``insert_later`` inside are written together: one statement when
    the block ends or before the next statement of anything else on the connection
    (which may read them), whichever comes first. Their keys are set then, not when
    queued. Inside a batch already: part of it. On PostgreSQL, inside a transaction
    only (its commit is not a statement: the block must end before it); elsewhere
    ``insert_later`` writes at once. An exception out of the block drops the rows
    queued in it that are not written yet, and a savepoint's rollback those queued
    inside it (the transaction or savepoint rolls back what is written). Rows that a
    ``then`` queues are written too."""
    connection = connections[using]
    current = _current(using)
    if current is not None:
        mark, flushes = len(current.rows), current.flushes
        try:
            yield current
        except BaseException:
            del current.rows[mark if current.flushes == flushes else 0 :]
            raise
        return
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        yield None
        return
    current = _Batch(using)
    connection.isotope_batch = current
    try:
        with connection.execute_wrapper(current):
            yield current
            while current.rows:
                current.flush()
    finally:
        connection.isotope_batch = None


def insert_later(
    instance: M,
    *,
    keys: dict[str, models.Model] | None = None,
    also: tuple[str, list] | None = None,
    then=None,
    using: str = "default",
) -> M:
    """``insert``, in the current ``batch`` (at once when none): a new row with an auto
    key. ``keys``: field (attname) → a row whose key it holds, queued before this one
    or written. ``also``: an SQL expression and its parameters, its value read with
    the key (as ``insert_with``). ``then``: called with that value (None without one)
    once the row is written and has its key. A model with save receivers is saved by
    the ORM at once (``insert``). Inside a batch the row comes back without its key:
    a caller that needs it must not ask for it before the batch is written."""
    model = type(instance)
    if instance.pk is not None or model._meta.auto_field is None:
        raise TypeError("insert_later: new rows with auto keys only")
    current = _current(using)
    keys = keys or {}
    links = {}
    for attname, parent in keys.items():
        row = None if parent.pk is not None or current is None else current.queued(parent)
        if row is None:
            if parent.pk is None:
                raise TypeError(f"insert_later: {attname} links a row not written or queued")
            _link(instance, attname, parent)
        else:
            links[attname] = row
    if current is None or _received(model):
        if links:
            current.flush()  # its parents first: they get their keys
            for attname in links:
                _link(instance, attname, keys[attname])
        _, extra = _insert(instance, using, also)
        if then is not None:
            then(extra)
        return instance
    fields, _, key = _insert_statement(model, using, False)
    for attname in links:
        setattr(instance, attname, 0)  # stands in for the parent's key while preparing
    try:
        values = _prepared(instance, fields, connections[using])
    finally:
        for attname in links:
            setattr(instance, attname, None)
    into = _insert_into(model, using)
    current.rows.append(_Row(instance, fields, values, into, key, links, also, then))
    return instance


def _link(child: models.Model, attname: str, parent: models.Model) -> None:
    """Set ``child``'s ``attname`` to ``parent``'s key, and the related object too when
    it is a foreign key's."""
    field = next((f for f in type(child)._meta.concrete_fields if f.attname == attname), None)
    if field is None:
        raise TypeError(f"{type(child).__name__} has no field {attname}")
    if field.is_relation:
        setattr(child, field.name, parent)
    else:
        setattr(child, attname, parent.pk)


def _prepared(instance, fields, connection) -> list:
    """The values an ``INSERT`` of ``instance`` writes to ``fields``, as the ORM
    prepares them."""
    instance._prepare_related_fields_for_save(operation_name="save")
    params = []
    for field in fields:
        value = field.pre_save(instance, True)
        if hasattr(value, "resolve_expression"):
            raise TypeError(f"{field.name}: an expression; portal.sql writes values only")
        params.append(field.get_db_prep_save(value, connection))
    return params
