"""Small builders for test data, written through the same services the product uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert

from membersync.member.schemas import MemberCreate
from membersync.member.service import upsert_member
from membersync.models import Member, Tenant
from membersync.runtime import Runtime
from membersync.tenant.service import create_tenant, create_token


async def make_tenant(runtime: Runtime, slug: str = "acme") -> Tenant:
    async with runtime.unit_of_work() as session:
        return await create_tenant(session, slug, None, runtime.clock.now())


async def make_token(runtime: Runtime, tenant: Tenant) -> str:
    async with runtime.unit_of_work() as session:
        return await create_token(session, tenant, "test", runtime.clock.now())


async def make_member(runtime: Runtime, tenant: Tenant, email: str = "ada@example.org") -> Member:
    async with runtime.unit_of_work() as session:
        member, _ = await upsert_member(session, tenant.id, MemberCreate(email=email), runtime.clock.now())
        return member


async def make_members(runtime: Runtime, tenant: Tenant, count: int, last_active_at: datetime | None = None) -> None:
    now = runtime.clock.now()
    rows: list[dict[str, Any]] = [
        {
            "tenant_id": tenant.id,
            "email": f"member{index}@example.org",
            "status": "active",
            "attributes": {},
            "last_active_at": last_active_at,
            "created_at": now,
            "updated_at": now,
        }
        for index in range(count)
    ]
    async with runtime.unit_of_work() as session:
        await session.execute(insert(Member), rows)
