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
    upsert_from_select,
)
from membersync.models import ExternalLink
from membersync.tracker.entities import EntityRef, SelectedLinks

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


def _of_selection(selected: SelectedLinks) -> list[Any]:
    return [
        ExternalLink.tenant_id == selected.tenant_id,
        ExternalLink.source == selected.source,
        ExternalLink.entity_type == selected.entity_type,
    ]


async def release_external_ids(session: AsyncSession, selected: SelectedLinks, now: datetime) -> None:
    """Free the external ids of the selection held by other entities: those links are left pending with no
    external id and no sync time."""
    pairs = selected.pairs()
    same_pair = (
        select(pairs.c[0]).where(pairs.c[0] == ExternalLink.entity_id, pairs.c[1] == ExternalLink.external_id).exists()
    )
    await session.execute(
        update(ExternalLink)
        .where(*_of_selection(selected), ExternalLink.external_id.in_(select(pairs.c[1])), ~same_pair)
        .values(external_id=None, status="pending", synced_at=None, fingerprint=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def upsert_selected(session: AsyncSession, selected: SelectedLinks, now: datetime) -> None:
    """Every entity of the selection synced as of `now`, in one statement; a link's metadata is kept."""
    pairs = selected.pairs()
    constants = {
        "tenant_id": selected.tenant_id,
        "entity_type": selected.entity_type,
        "source": selected.source,
        "synced_at": now,
        "status": "synced",
        "retry_count": 0,
        "metadata": {},
        "created_at": now,
        "updated_at": now,
    }
    columns = ["entity_id", "external_id", *constants]
    values = [pairs.c[0], pairs.c[1]] + [
        bindparam(f"selected_{name}", value, type_=ExternalLink.__table__.c[name].type)
        for name, value in constants.items()
    ]
    refreshed = ["external_id", "synced_at", "status", "retry_count", "updated_at"]
    cleared = {"last_error": None, "deleted_at": None, "fingerprint": None, "remote_updated_at": None}
    statement = upsert_from_select(
        dialect_of(session), ExternalLink, LINK_KEY, columns, select(*values).select_from(pairs), refreshed, cleared
    )
    await session.execute(statement)


async def selected_links(session: AsyncSession, selected: SelectedLinks) -> list[ExternalLink]:
    """The links of the entities the selection yields."""
    pairs = selected.pairs()
    statement = select(ExternalLink).where(*_of_selection(selected), ExternalLink.entity_id.in_(select(pairs.c[0])))
    return list((await session.scalars(statement.order_by(ExternalLink.id))).all())
