"""Small builders for test data, written through the same services the product uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from membersync.clock import FrozenClock
from membersync.identity.schemas import MappedRecord
from membersync.identity.service import ApplyResult, apply_records
from membersync.jobs.runner import JobRunner
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


RECORDS_T0 = datetime(2026, 3, 1, tzinfo=UTC)


def mapped_record(external_id: str | None, minutes: int = 0, **values: Any) -> MappedRecord:
    """A source's record as its mapping hands it over, changed `minutes` after `RECORDS_T0`."""
    return MappedRecord(values=values, external_id=external_id, changed_at=RECORDS_T0 + timedelta(minutes=minutes))


async def apply_page(
    runtime: Runtime, tenant: Tenant, records: list[MappedRecord], source: str = "crm", **kwargs: Any
) -> ApplyResult:
    """`apply_records` for one page, in its own transaction."""
    async with runtime.unit_of_work() as session:
        return await apply_records(session, runtime.tracker, tenant.id, source, records, runtime.clock.now(), **kwargs)


async def fail_twice_then_succeed(runner: JobRunner, clock: FrozenClock) -> None:
    """Run a job whose first two tries fail: each retry waits the 60 s backoff (nothing is claimed a second
    early), and the third try succeeds."""
    assert (await runner.run_until_idle()).retried == 1
    clock.advance(seconds=59)
    assert (await runner.run_until_idle()).claimed == 0
    clock.advance(seconds=1)
    assert (await runner.run_until_idle()).retried == 1
    clock.advance(seconds=60)
    assert (await runner.run_until_idle()).succeeded == 1
