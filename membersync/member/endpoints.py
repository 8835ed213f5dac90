"""Members API, scoped to the tenant of the bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from membersync.api.deps import MemberId, RuntimeDep, TenantDep
from membersync.member import service
from membersync.member.schemas import (
    EntitlementOut,
    ExternalProfileOut,
    MemberCreate,
    MemberDetail,
    MemberOut,
    MemberPage,
)

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.post("", response_model=MemberOut, status_code=status.HTTP_200_OK)
async def upsert_member(body: MemberCreate, tenant: TenantDep, runtime: RuntimeDep, response: Response) -> MemberOut:
    """Create a member, or update the member with the same normalised email (201 when created)."""
    async with runtime.unit_of_work() as session:
        member, created = await service.upsert_member(session, tenant.id, body, runtime.clock.now())
    if created:
        response.status_code = status.HTTP_201_CREATED
    return MemberOut.model_validate(member)


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
