"""`in_flight`: a statement goes to the database before the caller's own work, and is never left running."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine, text

from membersync.db.engine import dialect_of, open_database
from membersync.db.overlap import in_flight
from membersync.db.urls import sync_url
from membersync.runtime import Runtime
from tests.conftest import POSTGRES_URL, require_service

LOCK_KEY = 730_517


async def test_the_result_of_work_in_flight_is_awaited_inside(runtime: Runtime) -> None:
    async with runtime.unit_of_work() as session, in_flight(session, session.scalar(text("SELECT 40 + 2"))) as answer:
        own_work = sum(range(10))
        assert await answer == 42
    assert own_work == 45


async def test_the_statement_reaches_the_server_before_the_callers_own_work() -> None:
    # The caller's check below is a blocking call on a connection of its own: the event loop does not run during
    # it, so the statement can only be on the server if `in_flight` sent it before handing over.
    require_service("PostgreSQL", "127.0.0.1", 5432)
    observer = create_engine(sync_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    database = open_database(POSTGRES_URL)
    try:
        with observer.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            async with database.sessions() as session:
                await session.execute(text("SELECT 1"))  # connected, as a page's session is by then
                waiting = session.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
                async with in_flight(session, waiting) as locked:
                    blocked = holder.scalar(
                        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    )
                    holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                    await locked
                await session.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        assert blocked == 1
    finally:
        observer.dispose()
        await database.engine.dispose()


async def test_an_error_in_the_callers_work_waits_for_the_work_in_flight(runtime: Runtime) -> None:
    steps: list[str] = []

    async def work() -> None:
        for step in ("sent", "answered"):
            await asyncio.sleep(0)
            steps.append(step)

    async with runtime.unit_of_work() as session:
        with pytest.raises(RuntimeError, match="own work failed"):
            async with in_flight(session, work()):
                raise RuntimeError("own work failed")
    assert steps == ["sent", "answered"]


async def test_an_error_of_the_work_in_flight_reaches_the_caller(runtime: Runtime) -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("refused")

    async with runtime.unit_of_work() as session:
        with pytest.raises(ValueError, match="refused"):
            async with in_flight(session, failing()) as outcome:
                await outcome


async def test_on_sqlite_the_work_is_done_before_the_callers_own(runtime: Runtime) -> None:
    steps: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0)
        steps.append("answered")

    async with runtime.unit_of_work() as session, in_flight(session, work()):
        steps.append("own work")
    expected = ["own work", "answered"] if dialect_of(session) == "postgresql" else ["answered", "own work"]
    assert steps == expected
