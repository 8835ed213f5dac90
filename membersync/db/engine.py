"""Engines and sessions. On SQLite every write transaction starts with BEGIN IMMEDIATE.

A deferred BEGIN followed by read-then-write fails with "database is locked" under concurrent
writers, because SQLite cannot upgrade a read lock while another writer waits; WAL and a busy
timeout do not prevent it. Read-only work uses `read_sessions`, whose transactions stay deferred.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from membersync.db.urls import async_url, sync_url

READ_ONLY_OPTION = "membersync_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)


def dialect_of(session: AsyncSession) -> str:
    """The dialect name of the database a session is bound to."""
    bind = session.get_bind()
    return bind.dialect.name


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
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        read_sessions=async_sessionmaker(read_engine, expire_on_commit=False),
    )


def open_sync_engine(url: str) -> Engine:
    """A synchronous engine, for migrations and the schema check at start-up."""
    if sync_url(url).get_backend_name() == "sqlite":
        _ensure_sqlite_directory(url)
    engine = create_engine(sync_url(url))
    if engine.dialect.name == "sqlite":
        install_sqlite_hooks(engine)
    return engine
