"""A real worker process (`python -m membersync.cli worker`) on the backend's queue: SQLite with SqliteHuey,
or PostgreSQL with RedisHuey. Each test stops the processes it started, by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.jobs.queue import HueyQueue
from membersync.runtime import Runtime
from tests.plugins_slow import MARKER_DIR_ENV, SlowProvider

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend_settings(settings: Settings, database_url: str, request: pytest.FixtureRequest) -> Settings:
    """SQLite with SqliteHuey, or PostgreSQL with RedisHuey."""
    if database_url.startswith("postgresql"):
        return settings.model_copy(update={"redis_url": request.getfixturevalue("redis_url")})
    return settings


@pytest.fixture
async def runtime_with_queue(backend_settings: Settings) -> AsyncIterator[Runtime]:
    queue = HueyQueue(backend_settings, batch_size=50)
    runtime, _ = assemble(backend_settings, queue=queue)
    runtime.providers.register(SlowProvider)
    queue.huey("audience-sync").flush()
    yield runtime
    queue.huey("audience-sync").flush()
    await runtime.aclose()


@pytest.fixture
def start_worker(backend_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(lease_seconds: float, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        environment = (
            os.environ
            | (env or {})
            | {
                "MEMBERSYNC_DATABASE_URL": backend_settings.effective_database_url,
                "MEMBERSYNC_DATA_DIR": str(backend_settings.data_dir),
                "MEMBERSYNC_REDIS_URL": backend_settings.redis_url or "",
                "MEMBERSYNC_QUEUE_NAMESPACE": backend_settings.queue_namespace,
                "MEMBERSYNC_PLUGINS": "tests.plugins_slow:SlowProvider,tests.plugins_slow:PidProvider",
                "MEMBERSYNC_JOB_LEASE_SECONDS": str(lease_seconds),
                "MEMBERSYNC_LOG_LEVEL": "WARNING",
                MARKER_DIR_ENV: str(tmp_path),
            }
        )
        command = [sys.executable, "-m", "membersync.cli", "worker", "--threads", "1", "--no-periodic", *extra]
        process = subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stderr is not None:
            sys.stderr.write(process.stderr.read().decode(errors="replace")[-3000:])
            process.stderr.close()
