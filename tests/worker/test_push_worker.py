"""`membersync worker --queue user-sync`, a real process, sends the batches `membersync push` queued."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.jobs.queue import USER_SYNC_QUEUE, HueyQueue
from membersync.models import PushBatch
from membersync.push.service import start_push
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestinationServer
from tests.factories import make_members, make_tenant

API_KEY = "worker-test-key"
# A limit out of the way (one slot a millisecond): the 50-an-hour spacing is tested on an injected clock.
FAST = {"MEMBERSYNC_PUSH_BATCHES_PER_PERIOD": "1000", "MEMBERSYNC_PUSH_PERIOD_SECONDS": "1"}


@pytest.fixture
def destination() -> Iterator[PushDestinationServer]:
    with PushDestinationServer() as server:
        yield server


@pytest.fixture
async def pushing(backend_settings: Settings, destination: PushDestinationServer) -> AsyncIterator[Runtime]:
    push = {"push_url": destination.url, "push_api_key": SecretStr(API_KEY)}
    settings = backend_settings.model_copy(update=push | {"push_batches_per_period": 1000, "push_period_seconds": 1})
    destination.configure(api_key=API_KEY)
    queue = HueyQueue(settings, batch_size=50)
    runtime, _ = assemble(settings, queue=queue)
    queue.huey(USER_SYNC_QUEUE).flush()
    yield runtime
    queue.huey(USER_SYNC_QUEUE).flush()
    await runtime.aclose()


async def _batch_statuses(runtime: Runtime) -> list[str]:
    async with runtime.database.read_sessions() as session:
        return list((await session.scalars(select(PushBatch.status).order_by(PushBatch.id))).all())


async def test_a_push_worker_process_sends_the_queued_batches(
    pushing: Runtime, destination: PushDestinationServer, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 1500)
    async with pushing.unit_of_work() as session:
        subscribers = pushing.destinations.get("subscribers")
        run = await start_push(session, subscribers, tenant.id, pushing.clock.now())
    assert len(run.batch_ids) == 2
    assert destination.url is not None
    env = FAST | {"MEMBERSYNC_PUSH_URL": destination.url, "MEMBERSYNC_PUSH_API_KEY": API_KEY}
    start_worker(300.0, "--queue", USER_SYNC_QUEUE, env=env)
    deadline = time.monotonic() + 30
    while destination.stats().accepted_subscribers < 1500:
        assert time.monotonic() < deadline, f"the worker sent {destination.stats()}"
        await asyncio.sleep(0.05)
    while await _batch_statuses(pushing) != ["succeeded", "succeeded"]:
        assert time.monotonic() < deadline, await _batch_statuses(pushing)
        await asyncio.sleep(0.05)
    assert destination.stats().accepted_batches == 2
