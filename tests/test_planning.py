"""`planned_for_values`: PostgreSQL plans the lookups inside it for their bound values, and only those."""

from __future__ import annotations

from sqlalchemy import text

from membersync.db.engine import dialect_of, planned_for_values
from membersync.runtime import Runtime


async def test_custom_plans_hold_inside_the_block_only(runtime: Runtime) -> None:
    async with runtime.unit_of_work() as session:
        if dialect_of(session) != "postgresql":
            async with planned_for_values(session):
                assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
            return
        show = text("SHOW plan_cache_mode")
        assert (await session.execute(show)).scalar_one() == "auto"
        async with planned_for_values(session):
            assert (await session.execute(show)).scalar_one() == "force_custom_plan"
        assert (await session.execute(show)).scalar_one() == "auto"


async def test_an_error_inside_leaves_the_next_transaction_as_it_was(runtime: Runtime) -> None:
    try:
        async with runtime.unit_of_work() as session, planned_for_values(session):
            raise LookupError("a lookup failed")
    except LookupError:
        pass
    async with runtime.unit_of_work() as session:
        if dialect_of(session) == "postgresql":
            assert (await session.execute(text("SHOW plan_cache_mode"))).scalar_one() == "auto"
