"""A real worker process killed with SIGKILL mid-job: the job runs again after its lease and completes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.jobs.queue import HueyQueue
from membersync.jobs.runner import sweep
from membersync.models import Job, JobStatus
from membersync.runtime import Runtime
from membersync.scheduling.service import sync_now
from tests.factories import make_member, make_tenant
from tests.plugins_slow import MARKER_DIR_ENV, SlowProvider

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 30


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
def start_worker(backend_settings: Settings, tmp_path: Path) -> Iterator[Callable[[float], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(lease_seconds: float) -> subprocess.Popen[bytes]:
        env = os.environ | {
            "MEMBERSYNC_DATABASE_URL": backend_settings.effective_database_url,
            "MEMBERSYNC_DATA_DIR": str(backend_settings.data_dir),
            "MEMBERSYNC_REDIS_URL": backend_settings.redis_url or "",
            "MEMBERSYNC_QUEUE_NAMESPACE": backend_settings.queue_namespace,
            "MEMBERSYNC_PLUGINS": "tests.plugins_slow:SlowProvider",
            "MEMBERSYNC_JOB_LEASE_SECONDS": str(lease_seconds),
            "MEMBERSYNC_LOG_LEVEL": "WARNING",
            MARKER_DIR_ENV: str(tmp_path),
        }
        command = [sys.executable, "-m", "membersync.cli", "worker", "--threads", "1", "--no-periodic"]
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


async def _wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not await _value(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _value(condition: Callable[[], object]) -> object:
    result = condition()
    return await result if asyncio.iscoroutine(result) else result


async def _job(runtime: Runtime) -> Job:
    async with runtime.database.read_sessions() as session:
        job = await session.scalar(select(Job).where(Job.name == "member.sync"))
        assert job is not None
        return job


async def test_killed_worker_job_is_recovered_after_its_lease(
    runtime_with_queue: Runtime, start_worker: Callable[[float], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    runtime = runtime_with_queue
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    assert await sync_now(runtime, tenant, [runtime.providers.get("slow")], force=True) == {"slow": 1}
    first = start_worker(1.0)
    await _wait_until(lambda: (tmp_path / "started").exists(), "the first worker to start the job")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert (await _job(runtime)).status == JobStatus.RUNNING

    async def recovered() -> bool:
        return await sweep(runtime.runner(), resend_after=runtime.runner().lease) == 1

    await _wait_until(recovered, "the lease to run out and the sweeper to re-queue the job")
    start_worker(300.0)

    async def succeeded() -> bool:
        return (await _job(runtime)).status == JobStatus.SUCCEEDED

    await _wait_until(succeeded, "the second worker to complete the job")
    job = await _job(runtime)
    assert job.attempts == 2
    assert member.id == job.entity_id
