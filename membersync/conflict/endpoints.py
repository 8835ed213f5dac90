"""The conflict review queue, scoped to the tenant of the bearer token."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from membersync.api.deps import ActorDep, RuntimeDep, TenantDep
from membersync.conflict import service
from membersync.conflict.schemas import ConflictOut, ConflictPage, ResolveConflict

router = APIRouter(prefix="/v1/conflicts", tags=["conflicts"])
ConflictId = Annotated[int, Path(ge=1, le=2**63 - 1, description="conflict id")]


@router.get("", response_model=ConflictPage)
async def list_conflicts(
    tenant: TenantDep,
    runtime: RuntimeDep,
    status: Literal["pending", "resolved", "superseded"] | None = "pending",
    member_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    field: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    source: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    cursor: Annotated[str | None, Query(max_length=19)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ConflictPage:
    """Conflicts in id order (pending by default), filterable by member, field and source."""
    async with runtime.database.read_sessions() as session:
        items, next_cursor = await service.list_conflicts(
            session,
            tenant.id,
            cursor=cursor,
            limit=limit,
            status=status,
            member_id=member_id,
            field=field,
            source=source,
        )
    return ConflictPage(items=[ConflictOut.model_validate(item) for item in items], next_cursor=next_cursor)


@router.post("/{conflict_id}/resolve", response_model=ConflictOut)
async def resolve_conflict(
    conflict_id: ConflictId, body: ResolveConflict, tenant: TenantDep, runtime: RuntimeDep, actor: ActorDep
) -> ConflictOut:
    """Keep the current value, accept the incoming one, or set another; 409 when already resolved."""
    async with runtime.unit_of_work() as session:
        conflict = await service.resolve(
            session, tenant.id, conflict_id, body.resolution, runtime.clock.now(), actor=actor, value=body.value
        )
        return ConflictOut.model_validate(conflict)
