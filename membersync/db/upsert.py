"""`insert_or_ignore`: the one place that knows SQLite and PostgreSQL spell upserts differently."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func
from sqlalchemy.dialects import postgresql, sqlite
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
    """SQL merging two JSON objects key by key (incoming wins), evaluated by the database, so two writers
    adding different keys at once both keep theirs."""
    if dialect == "postgresql":
        return current.op("||")(incoming)
    return func.json_patch(current, incoming)


def insert_or_update(
    dialect: str,
    model: type[DeclarativeBase],
    conflict: Sequence[str],
    values: dict[str, Any],
    update: Sequence[str],
    where: Any = None,
    merge_json: Sequence[str] = (),
    increment: Sequence[str] = (),
) -> Insert:
    """`INSERT … ON CONFLICT (conflict) DO UPDATE SET` the `update` columns to the inserted values.

    With `where`, the existing row is updated only when that condition holds on it.
    """
    table = model.__table__
    assert isinstance(table, Table)
    statement: Any = _dialect_insert(dialect, table)
    if values:
        statement = statement.values(**values)
    changes = {column: statement.excluded[column] for column in update}
    for column in merge_json:
        changes[column] = json_merge(dialect, table.c[column], statement.excluded[column])
    for column in increment:
        changes[column] = table.c[column] + statement.excluded[column]
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(conflict), set_=changes, where=where
    )
