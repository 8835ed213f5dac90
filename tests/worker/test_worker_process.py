"""A real worker process killed with SIGKILL mid-job: the job runs again after its lease and completes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from sqlalchemy import select

from membersync.jobs.runner import sweep
from membersync.models import ExternalProfile, Job, JobStatus
from membersync.runtime import Runtime
from membersync.scheduling.service import sync_now
from tests.factories import make_member, make_members, make_tenant
from tests.plugins_slow import PidProvider

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 30


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
    runtime_with_queue: Runtime, start_worker: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
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


def _worker_children(pid: int) -> list[psutil.Process]:
    """The spawned worker processes (multiprocessing also starts a resource tracker)."""
    return [child for child in psutil.Process(pid).children() if "spawn_main" in " ".join(child.cmdline())]


async def test_several_worker_processes_share_the_queue_and_stop_on_sigterm(
    runtime_with_queue: Runtime, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    runtime = runtime_with_queue
    runtime.providers.register(PidProvider)
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 120)
    parent = start_worker(300.0, "--processes", "2")
    await _wait_until(lambda: len(_worker_children(parent.pid)) == 2, "two worker processes")
    children = _worker_children(parent.pid)
    assert await sync_now(runtime, tenant, [runtime.providers.get("pid")], force=True) == {"pid": 120}

    async def all_done() -> bool:
        async with runtime.database.read_sessions() as session:
            statuses = (await session.scalars(select(Job.status).where(Job.name == "member.sync"))).all()
        return len(statuses) == 120 and set(statuses) == {JobStatus.SUCCEEDED}

    await _wait_until(all_done, "the worker processes to run every job")
    async with runtime.database.read_sessions() as session:
        pids = {profile.data["pid"] for profile in (await session.scalars(select(ExternalProfile))).all()}
    assert pids <= {child.pid for child in children}
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=DEADLINE_SECONDS) == 0
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
