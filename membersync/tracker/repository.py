"""All SQL of the tracker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import (
    in_values,
    insert_or_update,
    insert_or_update_many,
    json_merge_into_key,
)
from membersync.models import ExternalLink
from membersync.tracker.entities import EntityRef

LINK_KEY = ["tenant_id", "entity_type", "entity_id", "source"]


def _keys(ref: EntityRef, source: str) -> dict[str, Any]:
    return {"tenant_id": ref.tenant_id, "entity_type": ref.entity_type, "entity_id": ref.entity_id, "source": source}


def _where(ref: EntityRef) -> list[Any]:
    return [
        ExternalLink.tenant_id == ref.tenant_id,
        ExternalLink.entity_type == ref.entity_type,
        ExternalLink.entity_id == ref.entity_id,
    ]


async def upsert(
    session: AsyncSession,
    ref: EntityRef,
    source: str,
    values: dict[str, Any],
    update: list[str],
    merge_metadata: bool,
    increment: tuple[str, ...] = (),
) -> ExternalLink:
    row = _keys(ref, source) | values
    merge = ["metadata"] if merge_metadata and "metadata" in row else []
    changed = [column for column in update if column not in merge and column not in increment]
    statement = insert_or_update(
        dialect_of(session), ExternalLink, LINK_KEY, row, changed, merge_json=merge, increment=increment
    )
    link_id = await session.scalar(statement.returning(ExternalLink.id))
    link = await session.get(ExternalLink, link_id, populate_existing=True)
    assert link is not None
    return link


async def upsert_many(
    session: AsyncSession, rows: list[dict[str, Any]], update: list[str], merge_metadata: bool
) -> None:
    """Insert or update many links in one statement (every row is written: the update has no condition)."""
    await session.execute(*_upsert_many(session, rows, update, merge_metadata))


async def upsert_many_ids(
    session: AsyncSession, rows: list[dict[str, Any]], update: list[str], merge_metadata: bool
) -> list[int]:
    """`upsert_many`, returning the links' ids (which costs SQLite a buffered RETURNING)."""
    statement, parameters = _upsert_many(session, rows, update, merge_metadata)
    return list((await session.execute(statement.returning(ExternalLink.id), parameters)).scalars())


def _upsert_many(
    session: AsyncSession, rows: list[dict[str, Any]], update: list[str], merge_metadata: bool
) -> tuple[Any, list[dict[str, Any]] | None]:
    merge = ["metadata"] if merge_metadata and "metadata" in update else []
    changed = [column for column in update if column not in merge]
    statement, parameters = insert_or_update_many(
        dialect_of(session), ExternalLink, LINK_KEY, rows, changed, merge_json=merge
    )
    return statement, parameters or None


async def holders_of(session: AsyncSession, source: str, claims: list[tuple[int, str, str]]) -> list[ExternalLink]:
    """The links holding any of these (tenant id, entity type, external id) in `source`."""
    key = tuple_(ExternalLink.tenant_id, ExternalLink.entity_type, ExternalLink.external_id)
    statement = select(ExternalLink).where(ExternalLink.source == source, key.in_(claims))
    return list((await session.scalars(statement)).all())


async def merge_into_metadata_key(session: AsyncSession, link_id: int, key: str, changes: dict[str, Any]) -> None:
    """Merge `changes` into the object under `key` of a link's metadata, in one atomic UPDATE."""
    incoming = bindparam("changes", changes, type_=ExternalLink.meta.type)
    merged = json_merge_into_key(dialect_of(session), ExternalLink.meta, key, incoming)
    await session.execute(
        update(ExternalLink)
        .where(ExternalLink.id == link_id)
        .values({ExternalLink.meta: merged})
        .execution_options(synchronize_session=False)
    )


async def entity_id_of(
    session: AsyncSession, tenant_id: int, source: str, entity_type: str, external_id: str
) -> str | None:
    """The id of the entity holding `external_id`: one indexed lookup, no ORM object built."""
    statement = select(ExternalLink.entity_id).where(
        ExternalLink.tenant_id == tenant_id,
        ExternalLink.source == source,
        ExternalLink.entity_type == entity_type,
        ExternalLink.external_id == external_id,
    )
    return await session.scalar(statement)


async def entity_ids_of(
    session: AsyncSession, tenant_id: int, source: str, entity_type: str, external_ids: list[str]
) -> dict[str, str]:
    """External id -> entity id for those of `external_ids` that are linked; one query per 1,000 ids."""
    found = await linked_of(session, tenant_id, source, entity_type, external_ids)
    return {external_id: entity_id for external_id, (entity_id, _) in found.items()}


async def linked_of(
    session: AsyncSession, tenant_id: int, source: str, entity_type: str, external_ids: list[str]
) -> dict[str, tuple[str, str | None]]:
    """External id -> (entity id, fingerprint) for those of `external_ids` that are linked, the fingerprint
    only while the link is synced and not deleted; one query per 1,000 ids."""
    current = case((and_(ExternalLink.status == "synced", ExternalLink.deleted_at.is_(None)), ExternalLink.fingerprint))
    found: dict[str, tuple[str, str | None]] = {}
    for start in range(0, len(external_ids), 1000):
        statement = select(ExternalLink.external_id, ExternalLink.entity_id, current).where(
            ExternalLink.tenant_id == tenant_id,
            ExternalLink.source == source,
            ExternalLink.entity_type == entity_type,
            in_values(dialect_of(session), ExternalLink.external_id, external_ids[start : start + 1000]),
        )
        rows = await session.execute(statement)
        found.update((external_id, (entity_id, fingerprint)) for external_id, entity_id, fingerprint in rows)
    return found


async def holder_of(
    session: AsyncSession, tenant_id: int, source: str, entity_type: str, external_id: str
) -> ExternalLink | None:
    statement = select(ExternalLink).where(
        ExternalLink.tenant_id == tenant_id,
        ExternalLink.source == source,
        ExternalLink.entity_type == entity_type,
        ExternalLink.external_id == external_id,
    )
    return await session.scalar(statement)


async def links_of(session: AsyncSession, ref: EntityRef, source: str | None = None) -> list[ExternalLink]:
    statement = select(ExternalLink).where(*_where(ref)).order_by(ExternalLink.source)
    if source is not None:
        statement = statement.where(ExternalLink.source == source)
    return list((await session.scalars(statement)).all())


async def set_deleted(session: AsyncSession, ref: EntityRef, source: str, at: datetime | None, now: datetime) -> bool:
    result = await session.execute(
        update(ExternalLink)
        .where(*_where(ref), ExternalLink.source == source)
        .values(deleted_at=at, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def stamp_deleted(session: AsyncSession, ref: EntityRef, now: datetime) -> list[str]:
    """Set `deleted_at` on the entity's live links; returns their sources."""
    result = await session.execute(
        update(ExternalLink)
        .where(*_where(ref), ExternalLink.deleted_at.is_(None))
        .values(deleted_at=now, updated_at=now)
        .returning(ExternalLink.source)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars())


async def page(
    session: AsyncSession,
    tenant_id: int,
    *,
    after: int,
    limit: int,
    source: str | None,
    status: str | None,
    entity_type: str | None,
) -> list[ExternalLink]:
    """Links of one tenant in id order after `after`, optionally filtered; one row more than `limit`."""
    statement = select(ExternalLink).where(ExternalLink.tenant_id == tenant_id, ExternalLink.id > after)
    for column, value in ((ExternalLink.source, source), (ExternalLink.status, status)):
        if value is not None:
            statement = statement.where(column == value)
    if entity_type is not None:
        statement = statement.where(ExternalLink.entity_type == entity_type)
    return list((await session.scalars(statement.order_by(ExternalLink.id).limit(limit + 1))).all())


async def entity_exists(
    session: AsyncSession, id_column: Any, tenant_column: Any, entity_id: Any, tenant_id: int
) -> bool:
    statement = select(id_column).where(id_column == entity_id, tenant_column == tenant_id)
    return (await session.scalar(statement)) is not None


async def by_ids(session: AsyncSession, ids: list[int]) -> list[ExternalLink]:
    statement = select(ExternalLink).where(ExternalLink.id.in_(ids)).order_by(ExternalLink.id)
    return list((await session.scalars(statement)).all())
