"""Letting the database work on one statement while the caller's own work goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of

_T = TypeVar("_T")


@asynccontextmanager
async def in_flight(session: AsyncSession, work: Coroutine[Any, Any, _T]) -> AsyncIterator[asyncio.Future[_T]]:
    """Start `work` (database calls on `session`) and let it run up to its first wait, its first statement sent;
    inside, the caller does work of its own that touches neither the session nor what `work` changes, then awaits
    the future for the result.

    On PostgreSQL the server and the caller run at once: the server's side of a page's statements is nearly a
    third of the page's time. Only the first statement is sent ahead; any after it go when the caller next awaits.
    On SQLite `work` is done before the block starts: aiosqlite runs SQLite on a thread of its own, which needs
    the interpreter to begin and end each statement, so it would wait on the caller's work (measured: no faster).
    The block never ends with `work` still using the session: on an error inside, it waits for `work` to finish
    (dropping its outcome) before the error goes on.
    """
    if dialect_of(session) != "postgresql":
        done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        done.set_result(await work)
        yield done
        return
    future = asyncio.ensure_future(work)
    await asyncio.sleep(0)
    try:
        yield future
    finally:
        if not future.done():
            await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved, so an outcome the caller never awaited is not reported as lost
