"""`membersync up`, a real process on the embedded default: the API answers, and the push batches queued on
the user-sync queue are sent while the audience-sync worker and the scheduler run beside them."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.jobs.queue import HueyQueue
from membersync.push.service import start_push
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestinationServer
from tests.factories import make_members, make_tenant

REPO = Path(__file__).resolve().parents[2]
API_KEY = "up-test-key"
DEADLINE_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def destination() -> Iterator[PushDestinationServer]:
    with PushDestinationServer() as server:
        server.configure(api_key=API_KEY)
        yield server


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: `up` is the embedded default's all-in-one mode."""
    path = tmp_path / "membersync.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def embedded(settings: Settings, destination: PushDestinationServer) -> Settings:
    push = {"push_url": destination.url, "push_api_key": SecretStr(API_KEY)}
    return settings.model_copy(update=push | {"push_batches_per_period": 1000, "push_period_seconds": 1})


@pytest.fixture
async def runtime_with_queue(embedded: Settings) -> AsyncIterator[Runtime]:
    runtime, _ = assemble(embedded, queue=HueyQueue(embedded, batch_size=50))
    yield runtime
    await runtime.aclose()


@pytest.fixture
def up(embedded: Settings) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = os.environ | {
        "MEMBERSYNC_DATABASE_URL": embedded.effective_database_url,
        "MEMBERSYNC_DATA_DIR": str(embedded.data_dir),
        "MEMBERSYNC_QUEUE_NAMESPACE": embedded.queue_namespace,
        "MEMBERSYNC_PUSH_URL": str(embedded.push_url),
        "MEMBERSYNC_PUSH_API_KEY": API_KEY,
        "MEMBERSYNC_PUSH_BATCHES_PER_PERIOD": "1000",
        "MEMBERSYNC_PUSH_PERIOD_SECONDS": "1",
        "MEMBERSYNC_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "membersync.cli", "up", "--port", str(port), "--threads", "1"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield process, port
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    if process.stderr is not None:
        process.stderr.close()


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_up_serves_the_api_and_sends_queued_push_batches(
    runtime_with_queue: Runtime, destination: PushDestinationServer, up: tuple[subprocess.Popen[bytes], int]
) -> None:
    process, port = up
    runtime = runtime_with_queue

    async def answering() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await _until(answering, "the API to answer")
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 1200)
    async with runtime.unit_of_work() as session:
        run = await start_push(session, runtime.destinations.get("subscribers"), tenant.id, runtime.clock.now())
    assert len(run.batch_ids) == 2

    async def delivered() -> bool:
        return destination.stats().accepted_subscribers == 1200

    await _until(delivered, "the user-sync worker inside `up` to send both batches")
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=DEADLINE_SECONDS) in (0, -signal.SIGTERM)
