"""Log a member in: record activity, refresh stale data inline, then sign a JWT."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from membersync.freshness.service import SyncOutcome, ensure_fresh_for_login
from membersync.member import service as member_service
from membersync.models import Member, Tenant
from membersync.runtime import Runtime

JWT_ALGORITHM = "HS256"


@dataclass(frozen=True)
class LoginResult:
    token: str
    claims: dict[str, Any]
    freshness: dict[str, SyncOutcome]


async def _build_claims(runtime: Runtime, tenant: Tenant, member: Member) -> dict[str, Any]:
    now = runtime.clock.now()
    claims: dict[str, Any] = {
        "sub": str(member.id),
        "tenant": tenant.slug,
        "email": member.email,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=runtime.settings.jwt_ttl_seconds)).timestamp()),
    }
    async with runtime.database.read_sessions() as session:
        for builder in runtime.claim_builders:
            claims.update(await builder(runtime, session, member))
    return claims


async def login(runtime: Runtime, tenant: Tenant, member_id: int) -> LoginResult:
    """Issue a JWT for the member; claim builders run only after every login-bound provider was handled."""
    async with runtime.unit_of_work() as session:
        member = await member_service.get_member(session, tenant.id, member_id)
        await member_service.touch_last_active(session, member, runtime.clock.now())
    freshness = await ensure_fresh_for_login(runtime, tenant, member)
    claims = await _build_claims(runtime, tenant, member)
    token = jwt.encode(claims, runtime.settings.secret_key.get_secret_value(), algorithm=JWT_ALGORITHM)
    return LoginResult(token=token, claims=claims, freshness=freshness)


def decode_token(runtime: Runtime, token: str) -> dict[str, Any]:
    """Verify a login JWT's signature and expiry, against the runtime's clock (the one that issued it)."""
    claims: dict[str, Any] = jwt.decode(
        token,
        runtime.settings.secret_key.get_secret_value(),
        algorithms=[JWT_ALGORITHM],
        options={"verify_exp": False, "verify_iat": False, "require": ["exp", "iat", "sub"]},
    )
    if claims["exp"] <= runtime.clock.now().timestamp():
        raise jwt.ExpiredSignatureError("Signature has expired")
    return claims
