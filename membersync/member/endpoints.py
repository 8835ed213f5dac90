"""Members API, scoped to the tenant of the bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from membersync.api.deps import MemberId, RuntimeDep, TenantDep
from membersync.member import service
from membersync.member.schemas import (
    EntitlementOut,
    ExternalProfileOut,
    MemberDetail,
    MemberOut,
    MemberPage,
)

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.get("/{member_id}", response_model=MemberDetail)
async def get_member(member_id: MemberId, tenant: TenantDep, runtime: RuntimeDep) -> MemberDetail:
    """A member with its external profiles and entitlements; 404 for a member of another tenant."""
    async with runtime.database.read_sessions() as session:
        found = await service.get_with_records(session, tenant.id, member_id)
    return MemberDetail(
        **MemberOut.model_validate(found.member).model_dump(),
        external_profiles=[ExternalProfileOut.model_validate(p) for p in found.profiles],
        entitlements=[EntitlementOut.model_validate(e) for e in found.entitlements],
    )


@router.get("", response_model=MemberPage)
async def list_members(
    tenant: TenantDep,
    runtime: RuntimeDep,
    cursor: Annotated[str | None, Query(max_length=19)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE_SIZE)] = 50,
    email: Annotated[str | None, Query(max_length=400)] = None,
) -> MemberPage:
    """Members in id order; pass `next_cursor` back as `cursor` for the next page."""
    async with runtime.database.read_sessions() as session:
        members, next_cursor = await service.list_members(session, tenant.id, cursor=cursor, limit=limit, email=email)
    return MemberPage(items=[MemberOut.model_validate(m) for m in members], next_cursor=next_cursor)
