"""Push: throughput to the emulated destination with the limit out of the way, and the 50-an-hour limit
over a simulated day (injected clock).

uv run python bench/push.py [--backend sqlite|postgres] [--members 20000] [--day-batches 1300]
(postgres uses Redis for the limiter and the job queue, as a distributed deployment does)
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from _common import (
    base_parser,
    delete_redis_keys,
    hard_limit,
    md_table,
    publish,
    quiet_logs,
    read_line,
    section,
    seed_members,
    seed_tenant,
    spawn,
    stop_process,
    temp_database,
)
from pydantic import SecretStr
from sqlalchemy import func, select

from membersync.assembly import assemble
from membersync.clock import FrozenClock
from membersync.heap import settle_startup_heap
from membersync.jobs.queue import InMemoryQueue
from membersync.models import Job, JobStatus, PushAttempt
from membersync.push.service import PushRun, start_push
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestinationServer

HOUR = timedelta(hours=1)
API_KEY = "sandbox-key"
WARM_UP_MEMBERS = 2_000


def _runtime(settings: Any, url: str, clock: Any = None) -> Runtime:
    runtime, _ = assemble(
        settings.model_copy(update={"push_url": url, "push_api_key": SecretStr(API_KEY)}),
        clock=clock,
        queue=InMemoryQueue(),
    )
    return runtime


@contextmanager
def _emulator_process() -> Iterator[str]:
    """The emulated destination in a process of its own (so it takes no CPU time from the measured one);
    yields the URL of its `POST /batches`."""
    process = spawn(["-m", "membersync.sandbox.push_destination", "--port", "0", "--api-key", API_KEY])
    try:
        line = read_line(process, timeout=30)
        if not line.startswith("listening on "):
            raise RuntimeError(f"unexpected first line from the emulator: {line!r}")
        yield line.removeprefix("listening on ")
    finally:
        stop_process(process)


def _accepted_subscribers(url: str) -> int:
    stats = httpx.get(url.removesuffix("/batches") + "/stats", timeout=10).json()
    return int(stats["accepted_subscribers"])


async def _queue_push(runtime: Runtime, tenant_id: int) -> PushRun:
    async with runtime.unit_of_work() as session:
        return await start_push(session, runtime.destinations.get("subscribers"), tenant_id, runtime.clock.now())


async def _send_all(runtime: Runtime) -> None:
    """Run the queued batches one at a time, as one worker thread runs them."""
    await runtime.runner().run_until_idle(queue="user-sync", limit=1)


async def _throughput(settings: Any, tenant_id: int, warm_up_tenant_id: int) -> dict[str, float]:
    with _emulator_process() as url:
        unlimited = settings.model_copy(update={"push_batches_per_period": 1_000_000})
        runtime = _runtime(unlimited, url)
        settle_startup_heap()  # as a worker thread does once its runtime is built
        try:
            # A long-running worker's state: statements compiled, connections open, code paths loaded.
            await _queue_push(runtime, warm_up_tenant_id)
            await _send_all(runtime)
            async with runtime.database.read_sessions() as session:
                first_attempt = int(await session.scalar(select(func.max(PushAttempt.id))) or 0)
            run = await _queue_push(runtime, tenant_id)
            started = time.perf_counter()
            await _send_all(runtime)
            seconds = time.perf_counter() - started
            async with runtime.database.read_sessions() as session:
                measured = select(func.sum(PushAttempt.duration_ms)).where(PushAttempt.id > first_attempt)
                request_ms = await session.scalar(measured)
            received = _accepted_subscribers(url) - WARM_UP_MEMBERS
        finally:
            await runtime.aclose()
    batches = len(run.batch_ids)
    return {
        "batches": batches,
        "members": received,
        "seconds": seconds,
        "request_ms": float(request_ms or 0) / batches,
        "overhead_ms": (seconds * 1000 - float(request_ms or 0)) / batches,
    }


async def _day(settings: Any, tenant_id: int, batches: int) -> dict[str, float]:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    clock = FrozenClock(start)
    with PushDestinationServer(clock=clock.now) as server:
        # A limiter store of its own: the throughput run's requests are stamped with today's time, which to
        # this day's clock is the future, so they would hold part of every hour's budget.
        day_settings = settings.model_copy(
            update={
                "push_batch_size": 1,
                "data_dir": settings.data_dir / "day",
                "queue_namespace": settings.queue_namespace + "day",
            }
        )
        assert server.url is not None
        runtime = _runtime(day_settings, server.url, clock)
        try:
            async with runtime.unit_of_work() as session:
                await start_push(session, runtime.destinations.get("subscribers"), tenant_id, clock.now())
            await _run_until(runtime, clock, start + 24 * HOUR)
            sent = sorted(push.at for push in server.stats().received)
        finally:
            await runtime.aclose()
    in_day = [moment for moment in sent if moment < start + 24 * HOUR]
    most = max((bisect_left(sent, moment + HOUR) - index for index, moment in enumerate(sent)), default=0)
    return {"sent": len(in_day), "allowed": 24 * 50, "most_in_an_hour": most, "violations": int(most > 50)}


async def _run_until(runtime: Runtime, clock: FrozenClock, end: datetime) -> None:
    runners = [runtime.runner() for _ in range(4)]
    while clock.now() < end:
        await asyncio.gather(*(runner.run_due(limit=25) for runner in runners))
        async with runtime.database.read_sessions() as session:
            due = await session.scalar(select(func.min(Job.run_at)).where(Job.status == JobStatus.QUEUED))
        if due is None:
            return
        clock.set(max(due, clock.now()))


def render(backend: str, throughput: dict[str, float], day: dict[str, float]) -> str:
    rate = throughput["batches"] / throughput["seconds"]
    rows = [
        ["batches/s (limit raised)", f"{rate:,.1f}"],
        ["members/s", f"{throughput['members'] / throughput['seconds']:,.0f}"],
        ["request to the emulator, mean ms per batch", f"{throughput['request_ms']:.1f}"],
        ["membersync overhead, ms per batch", f"{throughput['overhead_ms']:.1f}"],
        ["24 h at 50/hour: batches sent / allowed", f"{day['sent']:,.0f} / {day['allowed']:,.0f}"],
        ["most requests in any sliding hour", f"{day['most_in_an_hour']:.0f}"],
    ]
    share = day["sent"] / day["allowed"]
    body = md_table(["figure", "value"], rows) + (
        f"\n\n- Aims: overhead per batch under 20 ms -> {'met' if throughput['overhead_ms'] < 20 else 'NOT met'}; "
        f"{share:.1%} of the day's budget used (aim >= 99 %) -> {'met' if share >= 0.99 else 'NOT met'}; "
        f"limit violations {day['violations']:.0f} (must be 0).\n"
        f"- Method: {throughput['members']:,.0f} members in batches of 1,000 pushed to the emulated destination "
        "(its own process, loopback HTTP) by one runner, one batch at a time as one worker thread runs them, the "
        "limit raised out of the way; overhead is the wall time minus the time spent in requests (building and "
        "sending the body, the emulator's answer), per batch: claiming the job, reading the batch and its members, "
        "the limiter, and in one transaction the attempt row, the batch state (with when its members were read) and "
        "the job's success, after a warm-up push of 2,000 members in the same process and with the worker's collector "
        "settings (`membersync.heap`: the start-up heap frozen, the youngest generation collected every 10,000 "
        "allocations). The day: batches of one member, more "
        "than a day's budget, run by four runners on an injected clock moved to each next due job, with a limiter "
        "store of its own."
    )
    return section(
        f"Push ({backend})", backend, "limiter: SQLite file" if backend == "sqlite" else "limiter: Redis", body
    )


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--day-batches", type=int, default=1_300)
    args = parser.parse_args()
    quiet_logs()
    with hard_limit(900), temp_database(args.backend) as db:
        settings = db.settings(redis=args.backend == "postgres")
        tenant_id = seed_tenant(db.url)
        seed_members(db.url, tenant_id, args.members)
        warm_up_tenant_id = seed_tenant(db.url, "warm-up")
        seed_members(db.url, warm_up_tenant_id, WARM_UP_MEMBERS)
        try:
            throughput = asyncio.run(_throughput(settings, tenant_id, warm_up_tenant_id))
            day_tenant = seed_tenant(db.url, "day")
            seed_members(db.url, day_tenant, args.day_batches)
            day = asyncio.run(_day(settings, day_tenant, args.day_batches))
        finally:
            if settings.redis_url:
                delete_redis_keys(settings.redis_url, f"membersync:{settings.queue_namespace}*:rate_*")
    publish(f"push-{args.backend}", render(args.backend, throughput, day), enabled=not args.no_doc)


if __name__ == "__main__":
    main()
