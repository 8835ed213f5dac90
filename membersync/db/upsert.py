"""`insert_or_ignore`: the one place that knows SQLite and PostgreSQL spell upserts differently."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from itertools import repeat
from operator import itemgetter, ne
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    case,
    cast,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from membersync.models.base import table_of


def _dialect_insert(dialect: str, table: Table) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def insert_or_ignore(dialect: str, model: type[DeclarativeBase], conflict: Sequence[str]) -> Insert:
    """`INSERT … ON CONFLICT (conflict) DO NOTHING`; chain `.values()`, `.from_select()` or `.returning()`."""
    table = table_of(model)
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
    table = table_of(model)
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

    Both databases get the rows as one JSON parameter, walked by the server (`jsonb_array_elements` on
    PostgreSQL, `json_each` on SQLite): the statement stays short, so it is parsed and planned once rather
    than once per batch of thousands of placeholders.
    """
    table = table_of(model)
    statement = _rows_insert(dialect, table, rows)
    if statement is None:
        return insert_or_update(dialect, model, conflict, {}, update, merge_json=merge_json), list(rows)
    return _on_conflict_update(dialect, table, statement, conflict, update, None, merge_json, ()), []


def upsert_from_select(
    dialect: str,
    model: type[DeclarativeBase],
    conflict: Sequence[str],
    columns: Sequence[str],
    rows: Select[Any],
    update: Sequence[str],
    fixed: dict[str, Any] | None = None,
) -> Insert:
    """`INSERT … SELECT rows ON CONFLICT (conflict) DO UPDATE SET` the `update` columns to the incoming
    values and the `fixed` ones to theirs: the rows never leave the database."""
    table = table_of(model)
    # SQLite parses an upsert after `INSERT … SELECT … FROM` only when the SELECT has a WHERE clause.
    statement: Any = _dialect_insert(dialect, table).from_select(list(columns), rows.where(true()))
    changes = {column: statement.excluded[column] for column in update} | (fixed or {})
    return statement.on_conflict_do_update(index_elements=list(conflict), set_=changes)  # type: ignore[no-any-return]


def insert_many(
    dialect: str, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]]
) -> tuple[Insert, list[dict[str, Any]]]:
    """A plain INSERT of many rows: the statement and the parameters to execute it with (one statement on
    PostgreSQL, where an executemany would send one INSERT per row)."""
    table = table_of(model)
    statement = _rows_insert(dialect, table, rows)
    return (sqlite.insert(table), list(rows)) if statement is None else (statement, [])


def _varying(columns: list[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The columns whose value is not the same in every row (at least one, so the rows can be counted)."""
    first = rows[0]
    varying = [column for column in columns if any(map(ne, repeat(first[column]), map(itemgetter(column), rows)))]
    return varying or columns[:1]


def _rows_insert(dialect: str, table: Table, rows: Sequence[dict[str, Any]]) -> Any:
    """`INSERT … SELECT` of many rows carried in one or a few parameters; None (SQLite only) when the rows hold
    a value JSON cannot carry."""
    if dialect != "postgresql":
        return _json_rows_insert(table, rows)
    statement = _pg_json_rows_insert(table, rows)
    return _unnest_insert(table, rows) if statement is None else statement


_POSTGRESQL = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]  # an unannotated __init__


def _pg_json_rows_insert(table: Table, rows: Sequence[dict[str, Any]]) -> Any:
    """`INSERT … SELECT` from a JSON array of the rows' varying values, walked by `jsonb_array_elements`, each
    cast to its column's type (JSON columns take their element as it is); the shared values are bound once.
    As jsonb the text is parsed once; as json each `->>` parses its row's text again up to its element (1,000
    members: 19.5 ms on the server, now 14; their audit entries 12.5, now 10).

    psycopg turns a list parameter into an array literal in Python, escaping every string: for 9,000 rows of
    ten columns (a page's audit entries, when they were a row per field) that took about 130 ms of the client's
    time, where the JSON text takes 35.
    None when the rows hold a value JSON cannot carry (the caller then sends arrays)."""
    if not rows:
        return None
    columns = list(rows[0])
    varying = _varying(columns, rows)
    payload = _rows_as_json(rows, varying, [_pg_json_converter(table.c[column].type) for column in varying])
    if payload is None:
        return None
    incoming = func.jsonb_array_elements(cast(bindparam("json_rows", payload, type_=Text), postgresql.JSONB))
    element = incoming.table_valued("value").render_derived("incoming").c.value
    selected = [
        _pg_json_element(element, varying.index(column), table.c[column].type)
        if column in varying
        else _shared_value(table, column, rows[0][column])
        for column in columns
    ]
    return postgresql.insert(table).from_select(columns, select(*selected))


def _shared_value(table: Table, column: str, value: Any) -> Any:
    """A value every row has, bound once."""
    column_type = table.c[column].type
    return cast(bindparam(f"{column}_value", value, type_=column_type), _cast_target(column_type))


def _cast_target(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    # Text is cast without a length: a value too long for its column fails the INSERT, as a bound one does,
    # where a cast to VARCHAR(n) would cut it.
    return Text() if isinstance(column_type, String) else column_type


def _is_json(column_type: TypeEngine[Any]) -> bool:
    return isinstance(column_type.dialect_impl(_POSTGRESQL), JSON)


# Row values are checked for cycles by their recursion alone: the encoder's own check costs a dict insert and delete
# for every list, every row included.
_ROWS_ENCODER = json.JSONEncoder(allow_nan=False, check_circular=False)


def _rows_as_json(
    rows: Sequence[dict[str, Any]], columns: list[str], converters: list[Callable[[Any], Any] | None]
) -> str | None:
    """The rows' values of `columns` as a JSON array of arrays, each column's values through its converter (None:
    as they are); None when a value is one JSON cannot carry. Built a column at a time: a page's tracker links
    and members are thousands of rows."""
    values = [
        map(itemgetter(column), rows) if convert is None else map(convert, map(itemgetter(column), rows))
        for column, convert in zip(columns, converters, strict=True)
    ]
    try:
        return _ROWS_ENCODER.encode(list(zip(*values, strict=True)))
    except (TypeError, ValueError, RecursionError):  # RecursionError: a value that contains itself
        return None


def _pg_json_converter(column_type: TypeEngine[Any]) -> Callable[[Any], Any] | None:
    """How a value of the column goes into the JSON text: a JSON column's as it is, any other's as the
    column's bind processing makes it, a timestamp in ISO 8601; None when that leaves every value as it is."""
    if _is_json(column_type):
        return None
    process = column_type.dialect_impl(_POSTGRESQL).bind_processor(_POSTGRESQL)
    if process is None and not _is_temporal(column_type):
        return None

    def convert(value: Any) -> Any:
        if process is not None:
            value = process(value)
        return value.isoformat() if isinstance(value, datetime | date) else value

    return convert


def _is_temporal(column_type: TypeEngine[Any]) -> bool:
    try:
        return issubclass(column_type.python_type, datetime | date)
    except NotImplementedError:  # a type that does not say what Python values it takes
        return True


def _pg_json_element(element: Any, index: int, column_type: TypeEngine[Any]) -> Any:
    if _is_json(column_type):
        return cast(element.op("->")(index), column_type)
    return cast(element.op("->>")(index), _cast_target(column_type))


def _unnest_insert(table: Table, rows: Sequence[dict[str, Any]]) -> Any:
    columns = list(rows[0])
    first = rows[0]
    varying = _varying(columns, rows)
    arrays = [
        bindparam(f"{column}_values", [row[column] for row in rows], type_=ARRAY(table.c[column].type))
        for column in varying
    ]
    unnested = func.unnest(*arrays).table_valued(*varying).render_derived("incoming")
    # A value shared by every row (the source, the time, the status) goes once, not once per row.
    selected = [
        unnested.c[column] if column in varying else _shared_value(table, column, first[column]) for column in columns
    ]
    return postgresql.insert(table).from_select(columns, select(*selected))


_SQLITE = sqlite.dialect()


def _json_payload(table: Table, rows: Sequence[dict[str, Any]], columns: list[str]) -> str | None:
    """The rows' values of `columns` as a JSON array of arrays: a JSON column's value as it is (`_element`), any
    other converted as SQLite stores it."""
    return _rows_as_json(rows, columns, [_sqlite_converter(table.c[column].type) for column in columns])


def _sqlite_converter(column_type: TypeEngine[Any]) -> Callable[[Any], Any] | None:
    if _is_embedded_json(column_type):
        return None
    return column_type.dialect_impl(_SQLITE).bind_processor(_SQLITE)


def _is_embedded_json(column_type: TypeEngine[Any]) -> bool:
    """A JSON column whose None is JSON's null: its value goes into the rows' JSON as it is, not as a JSON text
    inside it, which would encode it twice."""
    return _is_json(column_type) and not getattr(column_type, "none_as_null", False)


def _element(table: Table, column: str, row: Any, index: int) -> Any:
    """The row's value of a column, as SQLite stores it: for a JSON column the element's JSON text (`->`, so
    null is the text null, as a bound None is), for any other the element's value."""
    if _is_embedded_json(table.c[column].type):
        return row.op("->")(f"$[{index}]")
    return func.json_extract(row, f"$[{index}]")


def _json_rows_insert(table: Table, rows: Sequence[dict[str, Any]]) -> Any:
    """`INSERT … SELECT` from a JSON array of the rows' varying values, each already converted as SQLite
    stores it (so a timestamp is the same text an ordinary INSERT writes); the shared values are bound once.
    None when the rows hold a value JSON cannot carry: the caller then binds them row by row."""
    if not rows:
        return None
    columns = list(rows[0])
    varying = _varying(columns, rows)
    payload = _json_payload(table, rows, varying)
    if payload is None:
        return None
    incoming = func.json_each(bindparam("json_rows", payload)).table_valued("value").alias("incoming")
    selected = [
        _element(table, column, incoming.c.value, varying.index(column))
        if column in varying
        else bindparam(f"{column}_value", rows[0][column], type_=table.c[column].type)
        for column in columns
    ]
    # SQLite parses an upsert after `INSERT … SELECT … FROM` only when the SELECT has a WHERE clause.
    return sqlite.insert(table).from_select(columns, select(*selected).select_from(incoming).where(true()))


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


def listed(dialect: str, name: str, item_type: TypeEngine[Any]) -> Any:
    """A table of one column, `value`, from the list bound as `name` (`list_parameter` makes its value): one
    parameter however long the list, so a statement built once serves every list."""
    if dialect == "postgresql":
        return func.unnest(bindparam(name, type_=ARRAY(item_type))).table_valued("value").render_derived(name=name)
    return func.json_each(bindparam(name, type_=Text)).table_valued("value").alias(name)


def list_parameter(dialect: str, values: Sequence[Any]) -> Any:
    """The value of a `listed` parameter: a list on PostgreSQL, JSON text for SQLite's `json_each`."""
    return list(values) if dialect == "postgresql" else json.dumps(list(values))
