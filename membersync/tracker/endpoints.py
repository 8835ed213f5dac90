"""Sync status and links, scoped to the tenant of the bearer token."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from membersync.api.deps import RuntimeDep, TenantDep
from membersync.tracker.schemas import LinkOut, LinkPage, SyncStatus

router = APIRouter(prefix="/v1", tags=["tracker"])
Name = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


@router.get("/sync-status", response_model=SyncStatus)
async def sync_status(
    tenant: TenantDep,
    runtime: RuntimeDep,
    entity_type: Name,
    entity_id: Annotated[str, Query(min_length=1, max_length=64)],
    source: Name,
) -> SyncStatus:
    """Status, external id, last synced and updated times and metadata of an entity in a source;
    `not_synced` when there is no link, 404 for an unknown entity."""
    async with runtime.database.read_sessions() as session:
        return await runtime.tracker.sync_status(session, tenant.id, entity_type, entity_id, source)


@router.get("/links", response_model=LinkPage)
async def list_links(
    tenant: TenantDep,
    runtime: RuntimeDep,
    source: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    status: Literal["synced", "pending", "failed"] | None = None,
    entity_type: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    cursor: Annotated[str | None, Query(max_length=19)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> LinkPage:
    """The tenant's links in id order, filterable by source, status and entity type; pass `next_cursor` back."""
    async with runtime.database.read_sessions() as session:
        links, next_cursor = await runtime.tracker.list_links(
            session, tenant.id, cursor=cursor, limit=limit, source=source, status=status, entity_type=entity_type
        )
    return LinkPage(items=[LinkOut.model_validate(link) for link in links], next_cursor=next_cursor)
