"""The tracker's library API. Every call takes the caller's session; the caller's boundary commits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.pagination import MAX_ID, decode_cursor
from membersync.errors import InvalidInput, NotFound
from membersync.jobs.policy import describe_error
from membersync.models import ExternalLink
from membersync.tracker import events, repository, selection
from membersync.tracker.bulk import SyncedLink, synced_rows, write_synced
from membersync.tracker.entities import EntityRef, LinkedRecord, SelectedLinks, TrackerRegistry
from membersync.tracker.rules import ExternalIdTaken, check_external_id, check_metadata
from membersync.tracker.schemas import SyncStatus

__all__ = ["ExternalIdTaken", "SelectedLinks", "SyncedLink", "Tracker"]

SYNCED, PENDING, FAILED = "synced", "pending", "failed"


class Tracker:
    """Records and answers which local entity is which external record, per source."""

    def __init__(self, registry: TrackerRegistry) -> None:
        self.registry = registry

    async def mark_synced(
        self,
        session: AsyncSession,
        entity: Any,
        external_id: str,
        source: str,
        now: datetime,
        *,
        metadata: dict[str, Any] | None = None,
        replace_metadata: bool = False,
        remote_updated_at: datetime | None = None,
    ) -> ExternalLink:
        """Link `entity` to `external_id` in `source`, now synced. Metadata keys merge unless `replace_metadata`.

        Safe under concurrency: the last writer's data wins, and a second entity claiming the same external id
        in the same source raises `ExternalIdTaken` naming both.
        """
        ref = self.registry.ref(entity)
        self.registry.check_source(source)
        values = {
            "external_id": check_external_id(external_id),
            "synced_at": now,
            "remote_updated_at": remote_updated_at,
            "status": SYNCED,
            "last_error": None,
            "retry_count": 0,
            "metadata": check_metadata(metadata),
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
            "fingerprint": None,
        }
        update = ["external_id", "synced_at", "remote_updated_at", "status", "last_error", "retry_count"]
        update += ["updated_at", "deleted_at", "fingerprint"] + (
            ["metadata"] if metadata is not None or replace_metadata else []
        )
        try:
            async with session.begin_nested():
                link = await repository.upsert(session, ref, source, values, update, not replace_metadata)
            events.defer(session, events.entity_synced, link, entity=ref)
            return link
        except IntegrityError:
            holder = await repository.holder_of(session, ref.tenant_id, source, ref.entity_type, external_id)
            if holder is None or holder.entity_id == ref.entity_id:
                raise
            holder_ref = EntityRef(holder.entity_type, holder.entity_id, holder.tenant_id)
            raise ExternalIdTaken.naming(external_id, source, holder_ref, ref) from None

    async def mark_synced_many(
        self,
        session: AsyncSession,
        source: str,
        links: Iterable[SyncedLink],
        now: datetime,
        *,
        replace_metadata: bool = False,
    ) -> int:
        """`mark_synced` for a whole page of entities with one statement per 1,000 links; returns how many.

        Every link is checked before anything is written; one entity given twice keeps its last link.
        """
        self.registry.check_source(source)
        rows = synced_rows(self.registry, source, links, now)
        return await write_synced(session, source, rows, replace_metadata)

    async def mark_synced_selected(self, session: AsyncSession, selected: SelectedLinks, now: datetime) -> None:
        """Mark synced, as of `now`, every entity the selection's query yields, without the rows leaving the
        database: for a source whose records are keyed by a value the entity holds (a destination keyed by
        email). An external id held by another entity moves to the selected one; the other is left pending, to
        be synced again. A link's metadata is kept."""
        self.registry.check_source(selected.source)
        try:
            async with session.begin_nested():
                await selection.upsert_selected(session, selected, now)
        except IntegrityError:
            # Rare (an email that moved between members), so it is only looked for once the write is refused.
            await selection.release_external_ids(session, selected, now)
            await selection.upsert_selected(session, selected, now)
        if events.entity_synced.receivers:
            for link in await selection.selected_links(session, selected):
                ref = EntityRef(link.entity_type, link.entity_id, link.tenant_id)
                events.defer(session, events.entity_synced, link, entity=ref)

    async def mark_failed(
        self, session: AsyncSession, entity: Any, source: str, error: str | BaseException, now: datetime
    ) -> ExternalLink:
        """Record a failed sync: `synced_at` and the external id stay as they were; the retry count goes up."""
        ref = self.registry.ref(entity)
        self.registry.check_source(source)
        text = error if isinstance(error, str) else describe_error(error)
        row = {"status": FAILED, "last_error": text[:2000], "retry_count": 1, "metadata": {}}
        row |= {"created_at": now, "updated_at": now}
        async with session.begin_nested():
            link = await repository.upsert(
                session, ref, source, row, ["status", "last_error", "updated_at"], False, increment=("retry_count",)
            )
        events.defer(session, events.sync_failed, link, entity=ref)
        return link

    async def mark_pending(
        self, session: AsyncSession, entity: Any, source: str, now: datetime, changes: dict[str, Any] | None = None
    ) -> ExternalLink:
        """Flag a local change that must go upstream; `changes` are merged into the link's `pending_changes`."""
        ref = self.registry.ref(entity)
        self.registry.check_source(source)
        checked = check_metadata(changes)
        link = await self._touch(session, ref, source, now, status=PENDING)
        if checked:
            await repository.merge_into_metadata_key(session, link.id, "pending_changes", checked)
            await session.refresh(link)
        return link

    async def mark_deleted(self, session: AsyncSession, entity: Any, source: str, now: datetime) -> bool:
        """Record that the source deleted its record; the link is kept (a re-created record revives it)."""
        ref = self.registry.ref(entity)
        self.registry.check_source(source)
        deleted = await repository.set_deleted(session, ref, source, now, now)
        if deleted:
            events.defer(session, events.link_deleted, source, entity=ref)
        return deleted

    async def entity_deleted(self, session: AsyncSession, entity: Any, now: datetime) -> list[str]:
        """The local entity was deleted: stamp `deleted_at` on its live links and fire `link_deleted` per source
        (when its type tracks deletions). Returns the sources whose links were stamped."""
        ref = self.registry.ref(entity)
        if not self.registry.entity_type(ref.entity_type).options.track_deleted:
            return []
        sources = await repository.stamp_deleted(session, ref, now)
        for source in sources:
            events.defer(session, events.link_deleted, source, entity=ref)
        return sources

    async def _touch(
        self, session: AsyncSession, ref: EntityRef, source: str, now: datetime, **values: Any
    ) -> ExternalLink:
        row = {"status": values["status"], "created_at": now, "updated_at": now, "metadata": {}, "retry_count": 0}
        row |= values
        update = [*values, "updated_at"]
        async with session.begin_nested():
            return await repository.upsert(session, ref, source, row, update, merge_metadata=False)

    async def is_synced(self, session: AsyncSession, entity: Any, source: str | None = None) -> bool:
        links = await repository.links_of(session, self.registry.ref(entity), source)
        return any(link.status == SYNCED and link.deleted_at is None for link in links)

    async def external_id(self, session: AsyncSession, entity: Any, source: str) -> str | None:
        links = await repository.links_of(session, self.registry.ref(entity), self.registry.check_source(source))
        return links[0].external_id if links and links[0].deleted_at is None else None

    async def links(self, session: AsyncSession, entity: Any) -> list[ExternalLink]:
        return await repository.links_of(session, self.registry.ref(entity))

    async def find_by_external_id(
        self, session: AsyncSession, tenant_id: int, external_id: str, source: str, entity_type: str
    ) -> EntityRef | None:
        """The local entity linked to `external_id` in `source` (deleted links included: they can revive)."""
        self.registry.check_source(source)
        self.registry.entity_type(entity_type)
        entity_id = await repository.entity_id_of(
            session, tenant_id, source, entity_type, check_external_id(external_id)
        )
        return None if entity_id is None else EntityRef(entity_type, entity_id, tenant_id)

    async def find_many_by_external_id(
        self, session: AsyncSession, tenant_id: int, external_ids: Iterable[str], source: str, entity_type: str
    ) -> dict[str, EntityRef]:
        """`find_by_external_id` for a page of ids at once: the linked ones, by external id."""
        found = await self.find_many_linked(session, tenant_id, external_ids, source, entity_type)
        return {external_id: linked.entity for external_id, linked in found.items()}

    async def find_many_linked(
        self, session: AsyncSession, tenant_id: int, external_ids: Iterable[str], source: str, entity_type: str
    ) -> dict[str, LinkedRecord]:
        """`find_many_by_external_id` with each link's fingerprint: the digest given to `mark_synced_many` with
        the record last applied, while the link is synced and not deleted."""
        self.registry.check_source(source)
        self.registry.entity_type(entity_type)
        wanted = sorted({check_external_id(external_id) for external_id in external_ids})
        found = await repository.linked_of(session, tenant_id, source, entity_type, wanted)
        return {
            external_id: LinkedRecord(EntityRef(entity_type, entity_id, tenant_id), fingerprint)
            for external_id, (entity_id, fingerprint) in found.items()
        }

    async def sync_status(
        self, session: AsyncSession, tenant_id: int, entity_type: str, entity_id: str, source: str
    ) -> SyncStatus:
        """The link of one entity in one source; `not_synced` when there is none, 404 for an unknown entity."""
        self.registry.check_source(source)
        ref = EntityRef(entity_type, entity_id, tenant_id)
        await self._ensure_exists(session, ref)
        links = await repository.links_of(session, ref, source)
        if not links:
            return SyncStatus(entity_type=entity_type, entity_id=entity_id, source=source, status="not_synced")
        link = links[0]
        return SyncStatus(
            entity_type=entity_type,
            entity_id=entity_id,
            source=source,
            status=link.status,
            external_id=link.external_id,
            last_synced_at=link.synced_at,
            last_updated_at=link.updated_at,
            remote_updated_at=link.remote_updated_at,
            deleted_at=link.deleted_at,
            retry_count=link.retry_count,
            last_error=link.last_error,
            metadata=link.meta,
        )

    async def _ensure_exists(self, session: AsyncSession, ref: EntityRef) -> None:
        entity_type = self.registry.entity_type(ref.entity_type)
        id_column = getattr(entity_type.model, entity_type.id_attribute)
        tenant_column = getattr(entity_type.model, entity_type.tenant_attribute)
        entity_id: Any = ref.entity_id
        if id_column.type.python_type is int:
            if not (entity_id.isascii() and entity_id.isdigit()) or int(entity_id) > MAX_ID:
                raise InvalidInput(f"entity_id: {ref.entity_type} ids are positive integers")
            entity_id = int(entity_id)
        if not await repository.entity_exists(session, id_column, tenant_column, entity_id, ref.tenant_id):
            raise NotFound(f"{ref.entity_type} {ref.entity_id} not found")

    async def list_links(
        self,
        session: AsyncSession,
        tenant_id: int,
        *,
        cursor: str | None,
        limit: int,
        source: str | None = None,
        status: str | None = None,
        entity_type: str | None = None,
    ) -> tuple[list[ExternalLink], str | None]:
        """A page of the tenant's links in id order, and the next page's cursor (None at the end)."""
        if source is not None:
            self.registry.check_source(source)
        if entity_type is not None:
            self.registry.entity_type(entity_type)
        after = decode_cursor(cursor)
        rows = await repository.page(
            session, tenant_id, after=after, limit=limit, source=source, status=status, entity_type=entity_type
        )
        links = rows[:limit]
        return links, str(links[-1].id) if len(rows) > limit else None
