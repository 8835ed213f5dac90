"""The scheduler tick for one provider over 100,000 members, end to end, including the huey messages.

sqlite: SQLite database + SqliteHuey in the data directory. postgres: PostgreSQL + RedisHuey on
redis://127.0.0.1:6379/0 (the huey keys created are deleted afterwards; nothing else in Redis is touched).
Then a second dispatch inside the de-duplication window, which must queue nothing.

    uv run python bench/tick_dispatch.py [--backend sqlite|postgres] [--members 100000]
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime

from _common import (
    BenchDatabase,
    base_parser,
    hard_limit,
    md_table,
    publish,
    quiet_logs,
    redis_queue_keys,
    section,
    seed_members,
    seed_tenant,
    temp_database,
)
from sqlalchemy import Select, select

from membersync.assembly import assemble
from membersync.jobs.queue import AUDIENCE_SYNC_QUEUE, HueyQueue
from membersync.models import Member, Tenant
from membersync.runtime import Runtime
from membersync.scheduling.service import dispatch_provider, run_tick
from membersync.testing import FakeSyncProvider

PROVIDER = "bench_tick"
AIM_SECONDS = 10.0
TIME_BOUND_SECONDS = 540.0


@dataclass
class TimedQueue:
    """The real HueyQueue, with the time spent sending messages added up."""

    inner: HueyQueue
    seconds: float = 0.0
    messages: int = 0

    def send(self, queue: str, job_ids: Sequence[int], eta: datetime | None = None) -> None:
        started = time.perf_counter()
        self.inner.send(queue, job_ids, eta)
        self.seconds += time.perf_counter() - started
        self.messages += math.ceil(len(job_ids) / self.inner.batch_size)

    def pending(self) -> int:
        return int(self.inner.pending(AUDIENCE_SYNC_QUEUE))

    def close(self) -> None:
        self.inner.close()


@dataclass
class Result:
    seed_seconds: float = 0.0
    tick_seconds: float = 0.0
    send_seconds: float = 0.0
    jobs: int = 0
    messages: int = 0
    pending: int = 0
    second_tick_seconds: float = 0.0
    second_tick_ran: bool = False
    second_tick_jobs: int = 0
    dedup_seconds: float = 0.0
    dedup_jobs: int | None = None


def all_members(tenant: Tenant) -> Select[Member]:
    return select(Member)


async def _first_tick(runtime: Runtime, queue: TimedQueue, result: Result) -> None:
    print("first tick …")
    started = time.perf_counter()
    report = await run_tick(runtime)
    result.tick_seconds = time.perf_counter() - started
    result.send_seconds, result.messages = queue.seconds, queue.messages
    result.jobs = report.jobs
    result.pending = queue.pending()
    print(f"  {report.jobs} jobs, {queue.messages} messages in {result.tick_seconds:.2f} s")


async def _second_dispatch(runtime: Runtime, result: Result) -> None:
    print("second tick and forced re-dispatch inside the de-duplication window …")
    started = time.perf_counter()
    report = await run_tick(runtime)
    result.second_tick_seconds = time.perf_counter() - started
    result.second_tick_ran, result.second_tick_jobs = report.ran, report.jobs
    async with runtime.database.read_sessions() as session:
        tenant = await session.scalar(select(Tenant))
    assert tenant is not None
    provider = runtime.providers.get(PROVIDER)
    started = time.perf_counter()
    result.dedup_jobs = await dispatch_provider(runtime, tenant, provider, trigger="manual", only_if_due=False)
    result.dedup_seconds = time.perf_counter() - started


async def run(db: BenchDatabase, members: int, redis: bool) -> Result:
    result = Result()
    tenant_id = seed_tenant(db.url)
    result.seed_seconds = seed_members(db.url, tenant_id, members)
    print(f"seeded {members} members in {result.seed_seconds:.1f} s")
    settings = db.settings(redis=redis)
    queue = TimedQueue(HueyQueue(settings, settings.job_batch_size))
    runtime, _ = assemble(settings, queue=queue)
    try:
        runtime.providers.register(FakeSyncProvider(PROVIDER, members_query=all_members))
        await _first_tick(runtime, queue, result)
        await _second_dispatch(runtime, result)
    finally:
        await runtime.aclose()
    return result


def _rows(members: int, batch_size: int, result: Result) -> list[list[object]]:
    database_seconds = result.tick_seconds - result.send_seconds
    messages = f"{result.messages} messages of up to {batch_size} ids; {result.pending} pending after"
    rate = f"{members / result.tick_seconds:,.0f} jobs/s"
    dedup = "`dispatch_provider(only_if_due=False)`: every row conflicts on its dedup key"
    return [
        ["`run_tick` end to end", f"{result.tick_seconds:.2f}", result.jobs, rate],
        ["… of which the database transaction", f"{database_seconds:.2f}", "", "window claim, INSERT … SELECT, commit"],
        ["… of which sending huey messages", f"{result.send_seconds:.2f}", "", messages],
        ["second `run_tick`, same 5-minute window", f"{result.second_tick_seconds:.3f}", result.second_tick_jobs,
         f"ran={result.second_tick_ran}"],
        ["re-dispatch inside the de-duplication window", f"{result.dedup_seconds:.2f}", result.dedup_jobs, dedup],
    ]  # fmt: skip


def render(backend: str, members: int, batch_size: int, result: Result) -> str:
    queue = "RedisHuey (redis://127.0.0.1:6379/0)" if backend == "postgres" else "SqliteHuey (data directory)"
    verdict = "met" if result.tick_seconds <= AIM_SECONDS else "NOT met"
    table = md_table(["step", "seconds", "jobs", "notes"], _rows(members, batch_size, result))
    body = f"""{table}

- Aim: `run_tick` <= {AIM_SECONDS:.0f} s for {members:,} members -> **{verdict}** ({result.tick_seconds:.2f} s).
- Seeding {members:,} members took {result.seed_seconds:.1f} s (not part of the figures).
- Method: one tenant, one `FakeSyncProvider` whose `members_to_sync` is `select(Member)`; the runtime's queue is
  the real `HueyQueue` wrapped to add up the time spent in `send`. No worker runs, so the first dispatch's jobs
  stay queued and hold their de-duplication keys during the second dispatch."""
    load = f"{members:,} members, 1 provider, job_batch_size {batch_size}, queue {queue}"
    return section(f"Tick dispatch ({backend})", backend, load, body)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    quiet_logs()
    redis = args.backend == "postgres"
    with hard_limit(TIME_BOUND_SECONDS + 60), ExitStack() as stack:
        db = stack.enter_context(temp_database(args.backend))
        if redis:
            stack.enter_context(redis_queue_keys(db.settings(redis=True), AUDIENCE_SYNC_QUEUE))
        result = asyncio.run(asyncio.wait_for(run(db, args.members, redis), TIME_BOUND_SECONDS))
        batch_size = db.settings().job_batch_size
    content = render(args.backend, args.members, batch_size, result)
    publish(f"tick_dispatch-{args.backend}", content, enabled=not args.no_doc)


if __name__ == "__main__":
    main()
