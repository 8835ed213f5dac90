"""Memory of a Worker process at rest and after 100,000 no-op jobs, run through the real queue.

The worker runs in its own process (`bench/_memory_worker.py`: a real `Worker` with a no-op
`FakeSyncProvider`), so its RSS is not mixed with the dispatcher's. This process seeds the members, then
dispatches them `--rounds` times with `sync_now(force=True)`, waiting each time until the ledger shows every
job of the round finished (finished jobs release their de-duplication key, so the next round queues again).

    uv run python bench/worker_memory.py [--backend sqlite|postgres] [--members 10000] [--rounds 10]
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psutil
from _common import (
    BenchDatabase,
    Deadline,
    base_parser,
    hard_limit,
    md_table,
    publish,
    quiet_logs,
    read_line,
    redis_queue_keys,
    section,
    seed_members,
    seed_tenant,
    spawn,
    stop_process,
    temp_database,
)
from _memory_worker import PROVIDER, register_noop

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.jobs import ledger
from membersync.jobs.queue import AUDIENCE_SYNC_QUEUE
from membersync.models import JobStatus, Tenant
from membersync.runtime import Runtime
from membersync.scheduling.service import sync_now

AIM_GROWTH = 0.10
THREADS = 4
TIME_BOUND_SECONDS = 570.0
POLL_SECONDS = 0.25
MIB = 1024 * 1024


@dataclass
class Sample:
    label: str
    jobs: int
    rss: int
    objects: int
    seconds: float = 0.0


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    failed: int = 0
    stopped_early: str | None = None

    @property
    def jobs(self) -> int:
        return self.samples[-1].jobs


class WorkerProcess:
    """The measured worker: started with the benchmark's settings, asked for its figures over stdin."""

    def __init__(self, settings: Settings) -> None:
        args = ["bench/_memory_worker.py", "--database-url", settings.effective_database_url]
        args += ["--data-dir", str(settings.data_dir), "--redis-url", settings.redis_url or ""]
        args += ["--queue-namespace", settings.queue_namespace, "--threads", str(THREADS)]
        self.process: subprocess.Popen[str] = spawn(args, stdin=subprocess.PIPE)
        self.ready = self._answer(60)

    def _answer(self, timeout: float) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(read_line(self.process, timeout))
        return answer

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        answer = self._answer(30)
        answer["rss_psutil"] = psutil.Process(self.process.pid).memory_info().rss
        return answer

    def stop(self) -> None:
        try:
            if self.process.poll() is None and self.process.stdin is not None:
                self.process.stdin.write("stop\n")
                self.process.stdin.flush()
                self.process.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            stop_process(self.process)


async def _wait_round(runtime: Runtime, marker: int, deadline: Deadline) -> dict[str, int]:
    while True:
        async with runtime.database.read_sessions() as session:
            counts: dict[str, int] = await ledger.count_since(session, marker, MEMBER_SYNC.name)
        if not counts.get(JobStatus.QUEUED, 0) and not counts.get(JobStatus.RUNNING, 0):
            return counts
        deadline.check("waiting for a round of jobs")
        await asyncio.sleep(POLL_SECONDS)


async def _one_round(runtime: Runtime, tenant: Tenant, deadline: Deadline) -> tuple[int, int, float]:
    """Dispatch every member once and wait; returns (succeeded, failed, seconds)."""
    started = time.perf_counter()
    async with runtime.database.read_sessions() as session:
        marker = await ledger.max_id(session)
    await sync_now(runtime, tenant, [runtime.providers.get(PROVIDER)], force=True)
    counts = await _wait_round(runtime, marker, deadline)
    return counts.get(JobStatus.SUCCEEDED, 0), counts.get(JobStatus.FAILED, 0), time.perf_counter() - started


def _sample(worker: WorkerProcess, label: str, jobs: int, seconds: float = 0.0) -> Sample:
    stats = worker.stats()
    return Sample(label, jobs, int(stats["rss_psutil"]), int(stats["objects"]), seconds)


async def _rounds(runtime: Runtime, tenant: Tenant, worker: WorkerProcess, rounds: int, result: Result) -> None:
    deadline = Deadline(TIME_BOUND_SECONDS - 60)
    done = 0
    for index in range(rounds):
        succeeded, failed, seconds = await _one_round(runtime, tenant, deadline)
        done, result.failed = done + succeeded, result.failed + failed
        sample = _sample(worker, f"after round {index + 1}", done, seconds)
        result.samples.append(sample)
        print(f"  round {index + 1}: {succeeded} jobs in {seconds:.1f} s, RSS {sample.rss / MIB:.1f} MiB")
        if index + 1 < rounds and deadline.remaining() < 1.5 * seconds:
            result.stopped_early = f"stopped after {index + 1} of {rounds} rounds to stay within the time bound"
            return


async def measure(settings: Settings, tenant_id: int, rounds: int) -> Result:
    result = Result()
    runtime, _ = assemble(settings)
    register_noop(runtime)
    worker = WorkerProcess(settings)
    try:
        await asyncio.sleep(1.0)
        result.samples.append(_sample(worker, "at rest (started, no job yet)", 0))
        print(f"worker pid {worker.process.pid} at rest: RSS {result.samples[0].rss / MIB:.1f} MiB")
        async with runtime.database.read_sessions() as session:
            tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        await _rounds(runtime, tenant, worker, rounds, result)
    finally:
        worker.stop()
        await runtime.aclose()
    return result


def run(db: BenchDatabase, members: int, rounds: int, redis: bool) -> Result:
    tenant_id = seed_tenant(db.url)
    print(f"seeded {members} members in {seed_members(db.url, tenant_id, members):.1f} s")
    return asyncio.run(measure(db.settings(redis=redis), tenant_id, rounds))


def _growth(sample: Sample, base: Sample) -> str:
    return f"{(sample.rss - base.rss) / base.rss:+.1%}"


def render(backend: str, members: int, rounds: int, result: Result) -> str:
    rest, warm, last = result.samples[0], result.samples[min(1, len(result.samples) - 1)], result.samples[-1]
    rows = [
        [s.label, f"{s.jobs:,}", f"{s.rss / MIB:.1f}", _growth(s, rest), _growth(s, warm), f"{s.objects:,}",
         f"{members / s.seconds:,.0f}" if s.seconds else ""]
        for s in result.samples
    ]  # fmt: skip
    headers = ["when", "jobs done", "RSS MiB", "vs rest", "vs round 1", "Python objects", "jobs/s in round"]
    growth = (last.rss - rest.rss) / rest.rss
    verdict = "met" if growth < AIM_GROWTH else "NOT met"
    queue = "RedisHuey + Redis locks" if backend == "postgres" else "SqliteHuey + database locks"
    early = f"\n- **{result.stopped_early}.**" if result.stopped_early else ""
    body = f"""{md_table(headers, rows)}

- RSS at rest {rest.rss / MIB:.1f} MiB, after {last.jobs:,} jobs {last.rss / MIB:.1f} MiB: growth {growth:+.1%}
  (from round 1 to the end, after the warm-up: {(last.rss - warm.rss) / warm.rss:+.1%}).
- Aim: under {AIM_GROWTH:.0%} growth from rest -> **{verdict}**. Failed jobs: {result.failed}.{early}
- Method: the worker is a separate process (`bench/_memory_worker.py`, `Worker(threads={THREADS},
  periodic=False)`, `job_concurrency` 10, a no-op `FakeSyncProvider`); RSS is read with psutil from this
  process, the object count is `len(gc.get_objects())` in the worker. The first jobs fill caches (SQLAlchemy's
  compiled statements, connection pools, HTTP connections and, on SQLite, each connection's page cache), so the
  step from rest to round 1 is mostly warm-up; growth across later rounds is what a leak would show."""
    load = f"{members:,} members x {rounds} rounds ({members * rounds:,} jobs), {queue}"
    return section(f"Worker memory ({backend})", backend, load, body)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    quiet_logs()
    redis = args.backend == "postgres"
    with hard_limit(TIME_BOUND_SECONDS + 60), ExitStack() as stack:
        db = stack.enter_context(temp_database(args.backend))
        if redis:
            stack.enter_context(redis_queue_keys(db.settings(redis=True), AUDIENCE_SYNC_QUEUE))
        result = run(db, args.members, args.rounds, redis)
    content = render(args.backend, args.members, args.rounds, result)
    publish(f"worker_memory-{args.backend}", content, enabled=not args.no_doc)


if __name__ == "__main__":
    main()
