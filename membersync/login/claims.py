"""Claim builders: each adds claims to the login JWT and sees the data the login path just refreshed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.models import Entitlement, Member
from membersync.runtime import Runtime


async def entitlement_claims(runtime: Runtime, session: AsyncSession, member: Member) -> dict[str, Any]:
    """`entitlements`: the resource ids the member holds now (expired ones left out)."""
    now = runtime.clock.now()
    statement = (
        select(Entitlement.resource_id)
        .where(Entitlement.member_id == member.id)
        .where(or_(Entitlement.expires_at.is_(None), Entitlement.expires_at > now))
        .order_by(Entitlement.resource_id)
        .distinct()
    )
    return {"entitlements": list((await session.scalars(statement)).all())}
