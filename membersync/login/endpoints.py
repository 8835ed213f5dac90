from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from membersync.api.deps import MemberId, RuntimeDep, TenantDep
from membersync.login import service

router = APIRouter(prefix="/v1/members", tags=["login"])


class LoginOut(BaseModel):
    token: str
    claims: dict[str, Any]
    freshness: dict[str, str]


@router.post("/{member_id}/login", response_model=LoginOut)
async def login(member_id: MemberId, tenant: TenantDep, runtime: RuntimeDep) -> LoginOut:
    """Refresh the member's stale login-bound providers inline (each waits at most 5 s for its lock),
    then issue a JWT whose claims see the fresh data. Provider failures never fail the login."""
    result = await service.login(runtime, tenant, member_id)
    return LoginOut(
        token=result.token, claims=result.claims, freshness={k: str(v) for k, v in result.freshness.items()}
    )
