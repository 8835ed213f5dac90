"""Possible duplicate members: list, merge, dismiss; scoped to the tenant of the bearer token."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from membersync.api.deps import ActorDep, RuntimeDep, TenantDep
from membersync.duplicate import service
from membersync.duplicate.schemas import DuplicatePage, DuplicatePairOut, MergeOut, MergePair

router = APIRouter(prefix="/v1/duplicates", tags=["duplicates"])
PairId = Annotated[int, Path(ge=1, le=2**63 - 1, description="duplicate pair id")]


@router.get("", response_model=DuplicatePage)
async def list_pairs(
    tenant: TenantDep,
    runtime: RuntimeDep,
    status: Literal["pending", "dismissed"] | None = "pending",
    cursor: Annotated[str | None, Query(max_length=19)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DuplicatePage:
    """Possible duplicates in id order (pending by default), each with its score and reasons."""
    async with runtime.database.read_sessions() as session:
        items, next_cursor = await service.list_pairs(session, tenant.id, cursor=cursor, limit=limit, status=status)
    return DuplicatePage(items=[DuplicatePairOut.model_validate(item) for item in items], next_cursor=next_cursor)


@router.post("/{pair_id}/merge", response_model=MergeOut)
async def merge_pair(
    pair_id: PairId, tenant: TenantDep, runtime: RuntimeDep, actor: ActorDep, body: MergePair | None = None
) -> MergeOut:
    """Merge the pair into one member (the older unless `survivor_id` names the other); audited."""
    async with runtime.unit_of_work() as session:
        summary = await service.merge(
            session,
            tenant.id,
            pair_id,
            runtime.clock.now(),
            actor=actor,
            survivor_id=body.survivor_id if body else None,
        )
    return MergeOut(
        survivor_id=summary.survivor_id, merged_id=summary.merged_id, fields_filled=list(summary.fields_filled)
    )


@router.post("/{pair_id}/dismiss", response_model=DuplicatePairOut)
async def dismiss_pair(pair_id: PairId, tenant: TenantDep, runtime: RuntimeDep, actor: ActorDep) -> DuplicatePairOut:
    """Not the same person: kept as dismissed so later scans do not raise it again."""
    async with runtime.unit_of_work() as session:
        pair = await service.dismiss(session, tenant.id, pair_id, runtime.clock.now(), actor=actor)
        return DuplicatePairOut.model_validate(pair)
