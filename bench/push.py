"""Push: throughput to the emulated destination with the limit out of the way, and the 50-an-hour limit
over a simulated day (injected clock).

uv run python bench/push.py [--backend sqlite|postgres] [--members 20000] [--day-batches 1300]
(postgres uses Redis for the limiter and the job queue, as a distributed deployment does)
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import (
    base_parser,
    hard_limit,
    md_table,
    publish,
    quiet_logs,
    section,
    seed_members,
    seed_tenant,
    temp_database,
)
from pydantic import SecretStr
from sqlalchemy import func, select

from membersync.assembly import assemble
from membersync.clock import FrozenClock
from membersync.jobs.queue import InMemoryQueue
from membersync.models import Job, JobStatus, PushAttempt
from membersync.push.service import start_push
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestinationServer

HOUR = timedelta(hours=1)


def _runtime(settings: Any, server: PushDestinationServer, clock: Any = None) -> Runtime:
    runtime, _ = assemble(
        settings.model_copy(update={"push_url": server.url, "push_api_key": SecretStr("sandbox-key")}),
        clock=clock,
        queue=InMemoryQueue(),
    )
    return runtime


async def _throughput(settings: Any, tenant_id: int, members: int) -> dict[str, float]:
    with PushDestinationServer() as server:
        unlimited = settings.model_copy(update={"push_batches_per_period": 1_000_000})
        runtime = _runtime(unlimited, server)
        try:
            async with runtime.unit_of_work() as session:
                run = await start_push(session, runtime.destinations.get("subscribers"), tenant_id, runtime.clock.now())
            started = time.perf_counter()
            await runtime.runner().run_until_idle(queue="user-sync")
            seconds = time.perf_counter() - started
            async with runtime.database.read_sessions() as session:
                request_ms = await session.scalar(select(func.sum(PushAttempt.duration_ms)))
            received = server.stats().accepted_subscribers
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
        runtime = _runtime(settings.model_copy(update={"push_batch_size": 1}), server, clock)
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
        f"- Method: {throughput['members']:,.0f} members in batches of 1,000 pushed by one runner to the emulated "
        "destination over loopback HTTP (uvicorn), the limit raised out of the way; overhead is the wall time "
        "minus the time spent in requests, per batch (reading the batch and its members, the limiter, the "
        "attempt row, the batch state and the members' tracker links). The day: batches of one member, more "
        "than a day's budget, run by four runners on an injected clock moved to each next due job."
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
        throughput = asyncio.run(_throughput(settings, tenant_id, args.members))
        day_tenant = seed_tenant(db.url, "day")
        seed_members(db.url, day_tenant, args.day_batches)
        day = asyncio.run(_day(settings, day_tenant, args.day_batches))
    publish(f"push-{args.backend}", render(args.backend, throughput, day), enabled=not args.no_doc)


if __name__ == "__main__":
    main()
