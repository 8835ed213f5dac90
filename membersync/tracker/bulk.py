"""Marking many links synced at once: one statement per chunk, for connectors handing over whole pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.tracker import events, repository
from membersync.tracker.entities import EntityRef, TrackerRegistry
from membersync.tracker.rules import ExternalIdTaken, check_external_id, check_metadata

CHUNK_SIZE = 1000
SYNCED_UPDATE = ["external_id", "synced_at", "remote_updated_at", "status", "last_error", "retry_count"]
SYNCED_UPDATE += ["updated_at", "deleted_at", "fingerprint"]


@dataclass(frozen=True)
class SyncedLink:
    """One entity now synced with an external record: what `mark_synced_many` takes per link."""

    entity: Any
    external_id: str
    metadata: dict[str, Any] | None = None
    remote_updated_at: datetime | None = None
    # A digest of the external record as applied (see `ExternalLink.fingerprint`); None forgets the last one.
    fingerprint: str | None = None


def synced_rows(
    registry: TrackerRegistry, source: str, links: Iterable[SyncedLink], now: datetime
) -> list[dict[str, Any]]:
    """Checked rows, one per entity (the last one given wins); refuses one external id on two entities."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for link in links:
        ref = registry.ref(link.entity)
        rows[(ref.entity_type, ref.entity_id)] = synced_row(ref, source, link, now)
    _refuse_shared_external_ids(source, rows.values())
    return list(rows.values())


def synced_row(ref: EntityRef, source: str, link: SyncedLink, now: datetime) -> dict[str, Any]:
    """The checked row of one link; refuses a bad external id or metadata."""
    return {
        "tenant_id": ref.tenant_id,
        "entity_type": ref.entity_type,
        "entity_id": ref.entity_id,
        "source": source,
        "external_id": check_external_id(link.external_id),
        "synced_at": now,
        "remote_updated_at": link.remote_updated_at,
        "status": "synced",
        "last_error": None,
        "retry_count": 0,
        "metadata": None if link.metadata is None else check_metadata(link.metadata),
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
        "fingerprint": link.fingerprint,
    }


def _ref(row: dict[str, Any]) -> EntityRef:
    return EntityRef(row["entity_type"], row["entity_id"], row["tenant_id"])


def _refuse_shared_external_ids(source: str, rows: Iterable[dict[str, Any]]) -> None:
    claimed: dict[tuple[int, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["tenant_id"], row["entity_type"], row["external_id"])
        holder = claimed.setdefault(key, row)
        if holder is not row:
            raise ExternalIdTaken.naming(row["external_id"], source, _ref(holder), _ref(row))


async def write_synced(
    session: AsyncSession, source: str, rows: Sequence[dict[str, Any]], replace_metadata: bool
) -> int:
    """Upsert the rows chunk by chunk and queue `entity_synced` for after the commit; returns how many links
    were written. A chunk refused by the database raises `ExternalIdTaken` when another entity holds one of
    its external ids."""
    notify = bool(events.entity_synced.receivers)
    ids: list[int] = []
    for chunk, update in _chunks(rows, replace_metadata):
        async with _refusal_explained(session, source, chunk):
            if notify:
                ids += await repository.upsert_many_ids(session, chunk, update, not replace_metadata)
            else:
                await repository.upsert_many(session, chunk, update, not replace_metadata)
    # Queued after the savepoints: releasing one counts as a commit to the session's events.
    for link in await repository.by_ids(session, ids) if notify else []:
        events.defer(
            session, events.entity_synced, link, entity=EntityRef(link.entity_type, link.entity_id, link.tenant_id)
        )
    return len(rows)


def _chunks(rows: Sequence[dict[str, Any]], replace_metadata: bool) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
    """The rows in chunks, those carrying metadata apart from those that keep the link's."""
    with_metadata = [row for row in rows if row["metadata"] is not None or replace_metadata]
    without = [row | {"metadata": {}} for row in rows if row["metadata"] is None and not replace_metadata]
    for group, metadata_update in ((with_metadata, ["metadata"]), (without, [])):
        for start in range(0, len(group), CHUNK_SIZE):
            chunk = [row | {"metadata": row["metadata"] or {}} for row in group[start : start + CHUNK_SIZE]]
            yield chunk, SYNCED_UPDATE + metadata_update


@asynccontextmanager
async def _refusal_explained(session: AsyncSession, source: str, chunk: list[dict[str, Any]]) -> AsyncIterator[None]:
    """The chunk's writes in a savepoint; a refusal by the database is explained when it is an external id
    held by another entity."""
    try:
        async with session.begin_nested():
            yield
    except IntegrityError:
        await _explain_refusal(session, source, chunk)
        raise


async def _explain_refusal(session: AsyncSession, source: str, chunk: list[dict[str, Any]]) -> None:
    claims = {(row["tenant_id"], row["entity_type"], row["external_id"]): row for row in chunk}
    for holder in await repository.holders_of(session, source, list(claims)):
        claimant = claims[(holder.tenant_id, holder.entity_type, holder.external_id or "")]
        if holder.entity_id != claimant["entity_id"]:
            holder_ref = EntityRef(holder.entity_type, holder.entity_id, holder.tenant_id)
            raise ExternalIdTaken.naming(claimant["external_id"], source, holder_ref, _ref(claimant))
