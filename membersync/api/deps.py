"""FastAPI dependencies: the runtime, and the tenant taken from the bearer API token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from membersync.errors import Unauthorized
from membersync.models import Tenant
from membersync.runtime import Runtime
from membersync.tenant import service as tenant_service

bearer = HTTPBearer(auto_error=False)
MemberId = Annotated[int, Path(ge=1, le=2**63 - 1, description="member id")]


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_tenant(
    runtime: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Tenant:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer API token")
    async with runtime.database.read_sessions() as session:
        return await tenant_service.authenticate(session, credentials.credentials)


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def get_actor(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """Who the audit trail names for a request: the API token, by its stored prefix (never the secret)."""
    return f"token:{credentials.credentials[:10]}" if credentials is not None else "anonymous"


ActorDep = Annotated[str, Depends(get_actor)]
