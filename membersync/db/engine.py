"""Engines and sessions. On SQLite every write transaction starts with BEGIN IMMEDIATE.

A deferred BEGIN followed by read-then-write fails with "database is locked" under concurrent
writers, because SQLite cannot upgrade a read lock while another writer waits; WAL and a busy
timeout do not prevent it. Read-only work uses `read_sessions`, whose transactions stay deferred.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from membersync.db.urls import async_url, sync_url

READ_ONLY_OPTION = "membersync_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_MIN_VERSION = (3, 38, 0)
GATE_POLL_MIN_SECONDS = 0.0002
GATE_POLL_MAX_SECONDS = 0.004


class WriteGate:
    """Serialises one process's SQLite write transactions before they reach SQLite.

    SQLite lets one writer in at a time and its busy handler retries after sleeps of up to 100 ms,
    so threads of one process that queue on SQLite itself waste most of their time asleep. Waiting
    here polls in well under a millisecond instead. Other processes still meet SQLite's busy timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holding: ContextVar[bool] = ContextVar(f"write_gate_{id(self)}", default=False)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._holding.get():
            yield
            return
        delay = GATE_POLL_MIN_SECONDS
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, GATE_POLL_MAX_SECONDS)
        token = self._holding.set(True)
        try:
            yield
        finally:
            self._holding.reset(token)
            self._lock.release()


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    write_factory: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    read_engine: AsyncEngine
    gate: WriteGate | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def read_connection(self) -> AsyncConnection:
        """A bare read-only connection, for hot paths where an ORM session costs more than the query."""
        return self.read_engine.connect()

    @asynccontextmanager
    async def sessions(self) -> AsyncIterator[AsyncSession]:
        """A session for writing; keep it short (on SQLite, one process writes through it at a time)."""
        if self.gate is None:
            async with self.write_factory() as session:
                yield session
            return
        async with self.gate.hold(), self.write_factory() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _ensure_sqlite_directory(url: str) -> None:
    database = sync_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def install_sqlite_hooks(engine: Engine) -> None:
    _require_sqlite(sqlite3.sqlite_version_info)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)


def _require_sqlite(version: tuple[int, int, int]) -> None:
    """Bulk writes read JSON columns out of their rows with `->`, which SQLite has from 3.38 on."""
    if version < SQLITE_MIN_VERSION:
        found, needed = (".".join(map(str, v)) for v in (version, SQLITE_MIN_VERSION))
        raise RuntimeError(f"membersync needs SQLite {needed} or newer; Python's sqlite3 module has {found}")


def dialect_of(session: AsyncSession) -> str:
    """The dialect name of the database a session is bound to."""
    bind = session.get_bind()
    return bind.dialect.name


@asynccontextmanager
async def planned_for_values(session: AsyncSession) -> AsyncIterator[None]:
    """Inside, PostgreSQL plans each statement for the values bound to it, not once for any value.

    Lookups bind their keys as one array (`in_values`). A generic plan cannot hash that array, so against a table
    without statistics yet (a tenant's first import) it compares every row with every key: half a second for
    1,000 keys and 20,000 rows, where a plan made for the array takes 3 ms. Writes keep generic plans: planning
    an INSERT of large arrays for their values costs more than it saves. A no-op on SQLite.
    """
    if dialect_of(session) != "postgresql":
        yield
        return
    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    yield
    # Not in a `finally`: after an error the transaction is rolled back, which undoes SET LOCAL anyway.
    await session.execute(text("SET LOCAL plan_cache_mode = DEFAULT"))


def open_database(url: str, *, pool_size: int = 10) -> Database:
    """Create the async engine and its session factories for a `sqlite:///` or `postgresql://` URL."""
    target = async_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": False}
    if target.get_backend_name() == "sqlite":
        _ensure_sqlite_directory(url)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    engine = create_async_engine(target, **kwargs)
    if engine.dialect.name == "sqlite":
        install_sqlite_hooks(engine.sync_engine)
    read_engine = engine.execution_options(**{READ_ONLY_OPTION: True})
    return Database(
        engine=engine,
        write_factory=async_sessionmaker(engine, expire_on_commit=False),
        read_sessions=async_sessionmaker(read_engine, expire_on_commit=False),
        read_engine=read_engine,
        gate=WriteGate() if engine.dialect.name == "sqlite" else None,
    )


def open_sync_engine(url: str) -> Engine:
    """A synchronous engine, for migrations and the schema check at start-up."""
    if sync_url(url).get_backend_name() == "sqlite":
        _ensure_sqlite_directory(url)
    engine = create_engine(sync_url(url))
    if engine.dialect.name == "sqlite":
        install_sqlite_hooks(engine)
    return engine
