"""Fixtures: every storage test runs on SQLite and on PostgreSQL; Redis tests on a real Redis.

A test that needs a service skips when it is unreachable, unless MEMBERSYNC_REQUIRE_SERVICES is set
(CI sets it), in which case it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from membersync.assembly import assemble
from membersync.clock import FrozenClock
from membersync.config import Settings
from membersync.db import migrate
from membersync.db.urls import sync_url
from membersync.jobs.queue import InMemoryQueue
from membersync.models.base import Base
from membersync.runtime import Runtime

POSTGRES_URL = os.environ.get("MEMBERSYNC_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MEMBERSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Every table: TRUNCATE's CASCADE reaches only tables that have a foreign key, and audit entries have none.
TABLES = tuple(sorted(Base.metadata.tables))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    if os.environ.get("MEMBERSYNC_REQUIRE_SERVICES"):
        pytest.fail(f"{name} at {host}:{port} is required (MEMBERSYNC_REQUIRE_SERVICES is set) but unreachable")
    pytest.skip(f"{name} at {host}:{port} is unreachable")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "membersync.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"mstest_{uuid.uuid4().hex[:10]}"
    admin = create_engine(sync_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    migrate.upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(sync_url(url))
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "membersync.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_schema_url")
    _truncate(url)
    return url


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path / "data",
        redis_url=None,
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        plugins="",
        login_lock_wait_seconds=5.0,
        queue_namespace=f"test-{uuid.uuid4().hex[:8]}-",
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def queue() -> InMemoryQueue:
    return InMemoryQueue()


@pytest.fixture
async def runtime(settings: Settings, clock: FrozenClock, queue: InMemoryQueue) -> AsyncIterator[Runtime]:
    built, _ = assemble(settings, clock=clock, queue=queue)
    yield built
    await built.aclose()
