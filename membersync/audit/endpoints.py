"""A member's audit trail, scoped to the tenant of the bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from membersync.api.deps import MemberId, RuntimeDep, TenantDep
from membersync.audit import service
from membersync.audit.schemas import AuditEntryOut, HistoryPage

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.get("/{member_id}/history", response_model=HistoryPage)
async def member_history(
    member_id: MemberId,
    tenant: TenantDep,
    runtime: RuntimeDep,
    cursor: Annotated[str | None, Query(max_length=19)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> HistoryPage:
    """What each operation changed in the member, newest first: every field's before and after, the source, the
    operation, the actor and the time."""
    async with runtime.database.read_sessions() as session:
        items, next_cursor = await service.history(session, tenant.id, member_id, cursor=cursor, limit=limit)
    return HistoryPage(items=[AuditEntryOut.model_validate(item) for item in items], next_cursor=next_cursor)
