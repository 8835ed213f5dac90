"""Creating or editing a member by email: the API's way into the identity path."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from membersync.api.deps import ActorDep, RuntimeDep, TenantDep
from membersync.identity.edit import apply_edit
from membersync.member.schemas import MemberCreate, MemberOut

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.post("", response_model=MemberOut, status_code=status.HTTP_200_OK)
async def upsert_member(
    body: MemberCreate, tenant: TenantDep, runtime: RuntimeDep, actor: ActorDep, response: Response
) -> MemberOut:
    """Create a member, or change the given fields of the member with the same normalised email (201 when
    created); the change is normalised, merged and audited like any source's, as an edit made in membersync."""
    async with runtime.unit_of_work() as session:
        member, created = await apply_edit(session, runtime.tracker, tenant.id, body, runtime.clock.now(), actor=actor)
        out = MemberOut.model_validate(member)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return out
