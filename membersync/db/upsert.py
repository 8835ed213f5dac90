"""`insert_or_ignore`: the one place that knows SQLite and PostgreSQL spell upserts differently."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, case, cast, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.dml import Insert


def _dialect_insert(dialect: str, table: Table) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def insert_or_ignore(dialect: str, model: type[DeclarativeBase], conflict: Sequence[str]) -> Insert:
    """`INSERT … ON CONFLICT (conflict) DO NOTHING`; chain `.values()`, `.from_select()` or `.returning()`."""
    table = model.__table__
    assert isinstance(table, Table)
    statement: Any = _dialect_insert(dialect, table)
    return statement.on_conflict_do_nothing(index_elements=list(conflict))  # type: ignore[no-any-return]


def json_merge(dialect: str, current: Any, incoming: Any) -> Any:
    """SQL merging two JSON objects by top-level key (incoming wins, nested values are replaced whole),
    evaluated by the database, so two writers adding different keys at once both keep theirs."""
    if dialect == "postgresql":
        return func.coalesce(current, func.jsonb_build_object()).op("||")(incoming)
    return _sqlite_top_level_merge(current, incoming)


def json_merge_into_key(dialect: str, current: Any, key: str, incoming: Any) -> Any:
    """SQL for `current` with the object under `key` merged (top-level) with `incoming`."""
    if dialect == "postgresql":
        inner = json_merge(dialect, current.op("->")(key), incoming)
        return json_merge(dialect, current, func.jsonb_build_object(key, inner))
    inner = json_merge(dialect, func.json_extract(current, f'$."{key}"'), incoming)
    return json_merge(dialect, current, func.json_object(key, func.json(inner)))


def _sqlite_top_level_merge(current: Any, incoming: Any) -> Any:
    # SQLite's json_patch merges nested objects too and drops null values (RFC 7396); PostgreSQL's `||`
    # does neither, so SQLite rebuilds the object from both sides' top-level keys instead.
    old = func.json_each(func.coalesce(current, "{}")).table_valued("key", "type", "value").alias("old")
    new = func.json_each(incoming).table_valued("key", "type", "value").alias("new")
    kept = select(old.c.key, old.c.type, old.c.value).where(old.c.key.not_in(select(new.c.key).scalar_subquery()))
    both = kept.union_all(select(new.c.key, new.c.type, new.c.value)).subquery("merged")
    value = case(
        (or_(both.c.type == "object", both.c.type == "array"), func.json(both.c.value)),
        (both.c.type == "true", func.json("true")),
        (both.c.type == "false", func.json("false")),
        else_=both.c.value,
    )
    return select(func.coalesce(func.json_group_object(both.c.key, value), "{}")).scalar_subquery()


def insert_or_update(
    dialect: str,
    model: type[DeclarativeBase],
    conflict: Sequence[str],
    values: dict[str, Any],
    update: Sequence[str],
    where: Any = None,
    merge_json: Sequence[str] = (),
    increment: Sequence[str] = (),
    index_where: Any = None,
) -> Insert:
    """`INSERT … ON CONFLICT (conflict) DO UPDATE SET` the `update` columns to the inserted values.

    With `where`, the existing row is updated only when that condition holds on it; `where` may be a function
    of the incoming row (`excluded`). `index_where` names a partial unique index by its condition.
    """
    table = model.__table__
    assert isinstance(table, Table)
    statement: Any = _dialect_insert(dialect, table)
    if values:
        statement = statement.values(**values)
    if callable(where):
        where = where(statement.excluded)
    return _on_conflict_update(
        dialect, table, statement, conflict, update, where, merge_json, increment, index_where=index_where
    )


def insert_or_update_many(
    dialect: str,
    model: type[DeclarativeBase],
    conflict: Sequence[str],
    rows: Sequence[dict[str, Any]],
    update: Sequence[str],
    merge_json: Sequence[str] = (),
) -> tuple[Insert, list[dict[str, Any]]]:
    """`insert_or_update` for many rows at once: the statement and the parameters to execute it with.

    PostgreSQL gets one array parameter per column, unnested by the server: the statement stays short,
    so it is parsed and planned once rather than once per batch of thousands of placeholders.
    """
    table = model.__table__
    assert isinstance(table, Table)
    if dialect != "postgresql":
        return insert_or_update(dialect, model, conflict, {}, update, merge_json=merge_json), list(rows)
    statement = _unnest_insert(table, rows)
    return _on_conflict_update(dialect, table, statement, conflict, update, None, merge_json, ()), []


def insert_many(
    dialect: str, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]]
) -> tuple[Insert, list[dict[str, Any]]]:
    """A plain INSERT of many rows: the statement and the parameters to execute it with (PostgreSQL as one
    statement of arrays, where an executemany would send one INSERT per row)."""
    table = model.__table__
    assert isinstance(table, Table)
    if dialect != "postgresql":
        return sqlite.insert(table), list(rows)
    return _unnest_insert(table, rows), []


def _unnest_insert(table: Table, rows: Sequence[dict[str, Any]]) -> Any:
    columns = list(rows[0])
    first = rows[0]
    varying = [column for column in columns if any(row[column] != first[column] for row in rows)] or columns[:1]
    arrays = [
        bindparam(f"{column}_values", [row[column] for row in rows], type_=ARRAY(table.c[column].type))
        for column in varying
    ]
    unnested = func.unnest(*arrays).table_valued(*varying).render_derived("incoming")
    # A value shared by every row (the source, the time, the status) goes once, not once per row.
    selected = [
        unnested.c[column]
        if column in varying
        else cast(bindparam(f"{column}_value", first[column], type_=table.c[column].type), table.c[column].type)
        for column in columns
    ]
    return postgresql.insert(table).from_select(columns, select(*selected))


def _on_conflict_update(
    dialect: str,
    table: Table,
    statement: Any,
    conflict: Sequence[str],
    update: Sequence[str],
    where: Any,
    merge_json: Sequence[str],
    increment: Sequence[str],
    index_where: Any = None,
) -> Insert:
    changes = {column: statement.excluded[column] for column in update}
    for column in merge_json:
        changes[column] = json_merge(dialect, table.c[column], statement.excluded[column])
    for column in increment:
        changes[column] = table.c[column] + statement.excluded[column]
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(conflict), index_where=index_where, set_=changes, where=where
    )


def in_values(dialect: str, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL as `= ANY(array)`, one parameter however many values, so the
    statement is not re-parsed for every list length."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]
