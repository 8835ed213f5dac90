"""Job throughput of a real Worker against the CRM emulator (50 ms per request), beside the ideal.

The CRM emulator runs as a subprocess on 127.0.0.1. For each run: dispatch every member with
`sync_now(force=True)`, then start `Worker(settings, threads=T, periodic=False)` in this process and poll the
ledger until no job of the run is queued or running. With `job_concurrency=1` each worker thread makes one
request at a time, so the ideal is threads / latency; in general threads x concurrency / latency.

    uv run python bench/job_throughput.py [--backend sqlite|postgres] [--members 3200] [--latency 0.05]
                                          [--processes 1]

With `--processes P` (P > 1) the worker is instead `python -m membersync.cli worker --processes P --threads T/P
--no-periodic` as a subprocess, started after the run's jobs are dispatched and stopped with SIGTERM; its
settings come from MEMBERSYNC_* environment variables and the demo provider from the plug-in
`membersync.sandbox.demo_provider:register_from_env`. Those runs write their own section,
`job_throughput_processes-<backend>`.

sqlite: SQLite + SqliteHuey + database locks. postgres: PostgreSQL + RedisHuey + Redis locks on
redis://127.0.0.1:6379/0 (the huey keys created are deleted at the end).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil
from _common import (
    BenchDatabase,
    Deadline,
    base_parser,
    hard_limit,
    md_table,
    preserved_signals,
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
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.jobs import ledger
from membersync.jobs.queue import AUDIENCE_SYNC_QUEUE
from membersync.models import Job, JobStatus, Tenant
from membersync.runtime import Runtime
from membersync.sandbox.demo_provider import DEMO_CRM_URL_ENV, DemoCrmProvider
from membersync.scheduling.service import sync_now
from membersync.worker import Worker

AIM_SHARE = 0.80
RUNS = ((8, 1), (32, 1), (4, 10))
PROCESS_RUNS = ((8, 1), (32, 1))
DEMO_PLUGIN = "membersync.sandbox.demo_provider:register_from_env"
STOP_TIMEOUT_SECONDS = 30.0
RUN_BOUND_SECONDS = 150.0
TIME_BOUND_SECONDS = 570.0
POLL_SECONDS = 0.1


@dataclass
class RunResult:
    threads: int
    concurrency: int
    jobs: int
    succeeded: int
    failed: int
    retried: int
    http_retries: int
    crm_requests: int
    span_seconds: float
    wall_seconds: float
    worker_cpu_seconds: float
    crm_cpu_seconds: float
    batch_ms_per_job: float
    busy_seconds: float
    processes: int = 1
    cpu_window_seconds: float = 0.0
    startup_cpu_seconds: float | None = None
    exit_code: int | None = None

    @property
    def rate(self) -> float:
        return self.succeeded / self.span_seconds if self.span_seconds else 0.0

    def ideal(self, latency: float) -> float:
        return self.threads * self.concurrency / latency

    @property
    def label(self) -> str:
        if self.processes == 1:
            return str(self.threads)
        return f"{self.threads} = {self.processes} processes x {self.threads // self.processes}"


@dataclass(frozen=True)
class Crm:
    pid: int
    url: str
    tenant_id: int


def start_crm(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = spawn(["-m", "membersync.sandbox.crm", "--port", "0", "--latency", str(latency)])
    line = read_line(process, 30)
    if not line.startswith("listening on http://127.0.0.1:"):
        stop_process(process)
        raise RuntimeError(f"unexpected CRM output {line!r}")
    return process, line.removeprefix("listening on ")


def cpu_seconds(pid: int | None = None) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of process `pid` and all its live descendants (the worker parent and its spawned children)."""
    parent = psutil.Process(pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def crm_requests(url: str) -> int:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:
        return int(json.load(response)["requests"])


async def _dispatch(runtime: Runtime, tenant_id: int) -> tuple[int, int]:
    async with runtime.database.read_sessions() as session:
        marker = await ledger.max_id(session)
        tenant = await session.get(Tenant, tenant_id)
    assert tenant is not None
    dispatched = await sync_now(runtime, tenant, [runtime.providers.get(DemoCrmProvider.name)], force=True)
    return marker, dispatched[DemoCrmProvider.name]


async def _wait_done(runtime: Runtime, marker: int, deadline: Deadline) -> float:
    """Poll the ledger until no job of the run is queued or running; returns when that was seen."""
    while True:
        async with runtime.database.read_sessions() as session:
            counts = await ledger.count_since(session, marker, MEMBER_SYNC.name)
        if not counts.get(JobStatus.QUEUED, 0) and not counts.get(JobStatus.RUNNING, 0):
            return time.perf_counter()
        deadline.check(f"waiting for the jobs after {marker}")
        await asyncio.sleep(POLL_SECONDS)


async def _wait_started(runtime: Runtime, marker: int, jobs: int, deadline: Deadline, worker: Any) -> float:
    """Poll the ledger until a job of the run has left `queued`; fails if the worker process exits first."""
    while True:
        async with runtime.database.read_sessions() as session:
            counts = await ledger.count_since(session, marker, MEMBER_SYNC.name)
        if counts.get(JobStatus.QUEUED, 0) < jobs:
            return time.perf_counter()
        if worker.poll() is not None:
            raise RuntimeError(f"worker process {worker.pid} exited with {worker.returncode} before any job ran")
        deadline.check(f"waiting for the first job after {marker}")
        await asyncio.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class LedgerFigures:
    counts: dict[str, int]
    span_seconds: float
    retried: int
    batch_ms_per_job: float
    busy_seconds: float


async def _batches(session: AsyncSession, mine: tuple[Any, ...]) -> list[tuple[float, int]]:
    """(seconds, jobs) of each batch: a batch's jobs share the claim time in `started_at`."""
    statement = select(Job.started_at, func.max(Job.finished_at), func.count()).where(*mine).group_by(Job.started_at)
    rows = (await session.execute(statement)).all()
    return [((finished - started).total_seconds(), count) for started, finished, count in rows if started and finished]


async def _ledger_figures(runtime: Runtime, marker: int) -> LedgerFigures:
    mine = (Job.id > marker, Job.name == MEMBER_SYNC.name)
    async with runtime.database.read_sessions() as session:
        counts = await ledger.count_since(session, marker, MEMBER_SYNC.name)
        first: datetime | None = await session.scalar(select(func.min(Job.started_at)).where(*mine))
        last: datetime | None = await session.scalar(select(func.max(Job.finished_at)).where(*mine))
        retried = int(await session.scalar(select(func.count()).where(*mine, Job.attempts > 1)) or 0)
        batches = await _batches(session, mine)
    return LedgerFigures(
        counts=counts,
        span_seconds=(last - first).total_seconds() if first and last else 0.0,
        retried=retried,
        batch_ms_per_job=statistics.median(1000 * seconds / jobs for seconds, jobs in batches) if batches else 0.0,
        busy_seconds=sum(seconds for seconds, _ in batches),
    )


def _run_worker(loop: asyncio.Runner, worker: Worker, runtime: Runtime, marker: int) -> tuple[float, int]:
    """Start the worker, wait for the run's jobs, stop it; returns (wall seconds, HTTP retries)."""
    with preserved_signals():
        started = time.perf_counter()
        worker.start()
        try:
            finished = loop.run(_wait_done(runtime, marker, Deadline(RUN_BOUND_SECONDS)))
            retries = worker.http_retries()
        finally:
            worker.stop()
    return finished - started, retries


def _worker_env(settings: Settings, crm_url: str, concurrency: int) -> dict[str, str]:
    """This process's environment without its MEMBERSYNC_* variables, plus the run's settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEMBERSYNC_")}
    env.update(
        MEMBERSYNC_DATABASE_URL=settings.database_url,
        MEMBERSYNC_DATA_DIR=str(settings.data_dir),
        MEMBERSYNC_QUEUE_NAMESPACE=settings.queue_namespace,
        MEMBERSYNC_JOB_CONCURRENCY=str(concurrency),
        MEMBERSYNC_LOG_LEVEL="WARNING",
        MEMBERSYNC_PLUGINS=DEMO_PLUGIN,
    )
    env[DEMO_CRM_URL_ENV] = crm_url
    if settings.redis_url:
        env["MEMBERSYNC_REDIS_URL"] = settings.redis_url
    return env


@dataclass(frozen=True)
class ProcessFigures:
    wall_seconds: float
    cpu_window_seconds: float
    startup_cpu_seconds: float
    worker_cpu_seconds: float
    exit_code: int | None


def _run_worker_processes(
    loop: asyncio.Runner, runtime: Runtime, env: dict[str, str], marker: int, jobs: int, processes: int, threads: int
) -> ProcessFigures:
    """Start `membersync worker --processes P`, wait for the run's jobs, stop it with SIGTERM (kill on timeout).

    Worker CPU is sampled from the process tree when the first job has left `queued` and when the last has
    finished (before the stop): the difference excludes the interpreters' and runtimes' start-up."""
    args = ["-m", "membersync.cli", "worker", "--processes", str(processes), "--threads", str(threads // processes)]
    started = time.perf_counter()
    worker = spawn([*args, "--no-periodic"], stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = Deadline(RUN_BOUND_SECONDS)
        first_seen = loop.run(_wait_started(runtime, marker, jobs, deadline, worker))
        startup_cpu = tree_cpu_seconds(worker.pid)
        finished = loop.run(_wait_done(runtime, marker, deadline))
        total_cpu = tree_cpu_seconds(worker.pid)
    finally:
        stop_process(worker, STOP_TIMEOUT_SECONDS)
    return ProcessFigures(
        wall_seconds=finished - started,
        cpu_window_seconds=finished - first_seen,
        startup_cpu_seconds=startup_cpu,
        worker_cpu_seconds=total_cpu - startup_cpu,
        exit_code=worker.returncode,
    )


def one_process_run(
    loop: asyncio.Runner, runtime: Runtime, crm: Crm, threads: int, concurrency: int, processes: int
) -> RunResult:
    """Dispatch every member, then let `membersync worker --processes P --threads T/P` run the jobs."""
    requests_before = crm_requests(crm.url)
    marker, jobs = loop.run(_dispatch(runtime, crm.tenant_id))
    print(f"run {processes} processes x {threads // processes} threads job_concurrency={concurrency}: {jobs} jobs")
    env = _worker_env(runtime.settings, crm.url, concurrency)
    crm_cpu_before = cpu_seconds(crm.pid)
    run = _run_worker_processes(loop, runtime, env, marker, jobs, processes, threads)
    crm_cpu_after = cpu_seconds(crm.pid)
    figures = loop.run(_ledger_figures(runtime, marker))
    result = RunResult(
        threads=threads,
        concurrency=concurrency,
        jobs=jobs,
        succeeded=figures.counts.get(JobStatus.SUCCEEDED, 0),
        failed=figures.counts.get(JobStatus.FAILED, 0),
        retried=figures.retried,
        http_retries=0,
        crm_requests=crm_requests(crm.url) - requests_before,
        span_seconds=figures.span_seconds,
        wall_seconds=run.wall_seconds,
        batch_ms_per_job=figures.batch_ms_per_job,
        busy_seconds=figures.busy_seconds,
        worker_cpu_seconds=run.worker_cpu_seconds,
        crm_cpu_seconds=crm_cpu_after - crm_cpu_before,
        processes=processes,
        cpu_window_seconds=run.cpu_window_seconds,
        startup_cpu_seconds=run.startup_cpu_seconds,
        exit_code=run.exit_code,
    )
    print(f"  {result.succeeded} succeeded in {result.span_seconds:.2f} s: {result.rate:.0f} members/s")
    print(f"  worker exit code after SIGTERM: {result.exit_code}")
    return result


def one_run(loop: asyncio.Runner, runtime: Runtime, crm: Crm, threads: int, concurrency: int) -> RunResult:
    """Dispatch every member, then let a fresh Worker with `threads` threads run the jobs."""
    crm_url = crm.url
    settings = runtime.settings.model_copy(update={"job_concurrency": concurrency})
    requests_before = crm_requests(crm_url)
    marker, jobs = loop.run(_dispatch(runtime, crm.tenant_id))
    print(f"run threads={threads} job_concurrency={concurrency}: {jobs} jobs dispatched")
    setup = lambda r: r.providers.register(DemoCrmProvider(crm_url))  # noqa: E731
    worker = Worker(settings, threads=threads, periodic=False, setup=setup)
    cpu_before, crm_cpu_before = cpu_seconds(), cpu_seconds(crm.pid)
    wall, http_retries = _run_worker(loop, worker, runtime, marker)
    cpu_after, crm_cpu_after = cpu_seconds(), cpu_seconds(crm.pid)
    figures = loop.run(_ledger_figures(runtime, marker))
    result = RunResult(
        threads=threads,
        concurrency=concurrency,
        jobs=jobs,
        succeeded=figures.counts.get(JobStatus.SUCCEEDED, 0),
        failed=figures.counts.get(JobStatus.FAILED, 0),
        retried=figures.retried,
        http_retries=http_retries,
        crm_requests=crm_requests(crm_url) - requests_before,
        span_seconds=figures.span_seconds,
        wall_seconds=wall,
        batch_ms_per_job=figures.batch_ms_per_job,
        busy_seconds=figures.busy_seconds,
        worker_cpu_seconds=cpu_after - cpu_before,
        crm_cpu_seconds=crm_cpu_after - crm_cpu_before,
    )
    result.cpu_window_seconds = result.wall_seconds
    print(f"  {result.succeeded} succeeded in {result.span_seconds:.2f} s: {result.rate:.0f} members/s")
    return result


def _all_runs(settings: Settings, crm: Crm, processes: int) -> list[RunResult]:
    with asyncio.Runner() as loop:
        runtime, _ = assemble(settings)
        runtime.providers.register(DemoCrmProvider(crm.url))
        try:
            if processes > 1:
                return [
                    one_process_run(loop, runtime, crm, threads, concurrency, processes)
                    for threads, concurrency in PROCESS_RUNS
                ]
            return [one_run(loop, runtime, crm, threads, concurrency) for threads, concurrency in RUNS]
        finally:
            loop.run(runtime.aclose())


def run(db: BenchDatabase, members: int, latency: float, redis: bool, processes: int = 1) -> list[RunResult]:
    tenant_id = seed_tenant(db.url)
    print(f"seeded {members} members in {seed_members(db.url, tenant_id, members):.1f} s")
    settings = db.settings(redis=redis)
    process, crm_url = start_crm(latency)
    print(f"CRM emulator pid {process.pid} at {crm_url}, latency {latency * 1000:.0f} ms")
    try:
        return _all_runs(settings, Crm(process.pid, crm_url, tenant_id), processes)
    finally:
        stop_process(process)


def _throughput_row(result: RunResult, latency: float) -> list[object]:
    rate, ideal = result.rate, result.ideal(latency)
    return [
        result.threads,
        result.concurrency,
        f"{result.succeeded}/{result.jobs}",
        f"{result.span_seconds:.2f}",
        f"{rate:.0f}",
        f"{ideal:.0f}",
        f"**{rate / ideal:.0%}**",
        f"{result.succeeded / result.wall_seconds:.0f}",
        f"{result.failed} / {result.retried} / {result.http_retries}",
    ]


def _diagnosis_row(result: RunResult) -> list[object]:
    cpu_ms = 1000 * result.worker_cpu_seconds / max(result.succeeded, 1)
    return [
        result.threads,
        result.concurrency,
        f"{result.batch_ms_per_job:.1f}",
        f"{result.busy_seconds / (result.threads * result.span_seconds):.0%}" if result.span_seconds else "",
        f"{result.worker_cpu_seconds / result.wall_seconds:.2f}",
        f"{cpu_ms:.1f}",
        f"{result.succeeded / result.worker_cpu_seconds:.0f}" if result.worker_cpu_seconds else "",
        result.crm_requests,
        f"{1000 * result.crm_cpu_seconds / max(result.crm_requests, 1):.2f}",
    ]


THROUGHPUT_HEADERS = ["threads", "job_concurrency", "succeeded", "span s", "members/s", "ideal/s", "% of ideal",
                      "members/s, wall", "failed / retried jobs / HTTP retries"]  # fmt: skip
DIAGNOSIS_HEADERS = ["threads", "job_concurrency", "ms per job inside a batch (median)", "thread busy share",
                     "worker CPU cores", "worker CPU ms/job", "members/s per CPU-second", "CRM requests",
                     "CRM CPU ms/request"]  # fmt: skip


def render(backend: str, members: int, latency: float, results: list[RunResult]) -> str:
    table = md_table(THROUGHPUT_HEADERS, [_throughput_row(result, latency) for result in results])
    diagnosis = md_table(DIAGNOSIS_HEADERS, [_diagnosis_row(result) for result in results])
    verdicts = [
        f"{result.threads} threads: {result.rate / result.ideal(latency):.0%}"
        for result in results
        if result.concurrency == 1
    ]
    met = all(result.rate >= AIM_SHARE * result.ideal(latency) for result in results if result.concurrency == 1)
    verdict = "met" if met else "NOT met"
    queue = "RedisHuey + Redis locks" if backend == "postgres" else "SqliteHuey + database locks"
    body = f"""{table}

- Aim: >= {AIM_SHARE:.0%} of ideal with `job_concurrency=1` -> **{verdict}** ({", ".join(verdicts)}).
- members/s = succeeded jobs / (last `finished_at` - first `started_at` of the run's ledger rows); ideal =
  threads x job_concurrency / latency. "members/s, wall" counts from `Worker.start()` to the poll that saw the
  last job finish (it includes the threads' runtime start-up and the 0.1 s polling step).
- Not "first to last completion": the runner writes a whole message's results back at once, so with 50 ids
  per message and one request at a time the first completions appear only after 50 x latency, and a rate
  over first-to-last completion would exceed the ideal.

Where the time goes:

{diagnosis}

- "ms per job inside a batch" is a batch's claim-to-write-back time / its jobs (job_batch_size 50): with
  `job_concurrency=1` the latency alone makes it {latency * 1000:.0f} ms. "thread busy share" is the threads' time
  inside batches / (threads x span): the rest is waiting for a message and the tail, when fewer batches than
  threads are left.
- CPU: "worker CPU cores" is this process's CPU time (worker threads, aiosqlite/psycopg threads, the 0.1 s
  ledger poll) / wall time; Python runs one thread at a time, so near 1.0 the worker is bound by the GIL and
  members/s cannot exceed "members/s per CPU-second", whatever the thread count.
- Method: CRM emulator subprocess (`python -m membersync.sandbox.crm --latency {latency}`), `DemoCrmProvider`;
  all messages are queued before the worker starts; runs one after another on the same database."""
    load = f"{members:,} members per run, latency {latency * 1000:.0f} ms, job_batch_size 50, {queue}"
    load += f", GIL switch interval {sys.getswitchinterval() * 1000:g} ms"
    return section(f"Job throughput ({backend})", backend, load, body)


PROCESS_THROUGHPUT_HEADERS = ["threads", "job_concurrency", "succeeded", "span s", "members/s", "ideal/s",
                              "% of ideal", "members/s, wall", "failed / retried jobs"]  # fmt: skip
PROCESS_DIAGNOSIS_HEADERS = ["threads", "job_concurrency", "ms per job inside a batch (median)", "thread busy share",
                             "worker CPU s, start-up", "worker CPU cores", "worker CPU ms/job",
                             "members/s per CPU-second", "CRM requests", "CRM CPU ms/request"]  # fmt: skip


def _process_throughput_row(result: RunResult, latency: float) -> list[object]:
    """The single-process row, labelled by processes x threads, without HTTP retries (not exported by workers)."""
    shared = _throughput_row(result, latency)[1:-1]
    return [result.label, *shared, f"{result.failed} / {result.retried}"]


def _process_diagnosis_row(result: RunResult) -> list[object]:
    cpu_ms = 1000 * result.worker_cpu_seconds / max(result.succeeded, 1)
    window = result.cpu_window_seconds
    return [
        result.label,
        result.concurrency,
        f"{result.batch_ms_per_job:.1f}",
        f"{result.busy_seconds / (result.threads * result.span_seconds):.0%}" if result.span_seconds else "",
        f"{result.startup_cpu_seconds:.1f}" if result.startup_cpu_seconds is not None else "",
        f"{result.worker_cpu_seconds / window:.2f}" if window else "",
        f"{cpu_ms:.1f}",
        f"{result.succeeded / result.worker_cpu_seconds:.0f}" if result.worker_cpu_seconds else "",
        result.crm_requests,
        f"{1000 * result.crm_cpu_seconds / max(result.crm_requests, 1):.2f}",
    ]


def render_processes(backend: str, members: int, latency: float, processes: int, results: list[RunResult]) -> str:
    table = md_table(PROCESS_THROUGHPUT_HEADERS, [_process_throughput_row(result, latency) for result in results])
    diagnosis = md_table(PROCESS_DIAGNOSIS_HEADERS, [_process_diagnosis_row(result) for result in results])
    verdicts = [f"{result.label} threads: {result.rate / result.ideal(latency):.0%}" for result in results]
    met = all(result.rate >= AIM_SHARE * result.ideal(latency) for result in results)
    verdict = "met" if met else "NOT met"
    exits = ", ".join(str(result.exit_code) for result in results)
    queue = "RedisHuey + Redis locks" if backend == "postgres" else "SqliteHuey + database locks"
    body = f"""{table}

- Aim: >= {AIM_SHARE:.0%} of ideal with `job_concurrency=1` -> **{verdict}** ({", ".join(verdicts)}).
- Worker: `python -m membersync.cli worker --processes {processes} --threads T/{processes} --no-periodic`, a
  subprocess started after all the run's messages are queued, configured by MEMBERSYNC_* environment variables
  (same database and queue namespace as this script, `MEMBERSYNC_JOB_CONCURRENCY=1`) and the plug-in
  `{DEMO_PLUGIN}`; stopped with SIGTERM to its parent after the run (exit codes: {exits}).
- members/s = succeeded jobs / (last `finished_at` - first `started_at` of the run's ledger rows); ideal =
  threads x job_concurrency / latency. "members/s, wall" counts from starting the subprocess to the poll that
  saw the last job finish, so it includes starting {processes + 1} interpreters and the workers' runtimes.
- HTTP retries are not reported: they are counted inside the worker processes and not exported.

Where the time goes:

{diagnosis}

- "worker CPU s, start-up" is the CPU time of the worker's process tree (parent and children, read with psutil)
  until the poll that saw the first job leave `queued`; "worker CPU cores" and "worker CPU ms/job" use the CPU
  time from then until the poll that saw the last job finish (before the stop), over that interval.
- The machine has {os.cpu_count()} CPUs, shared by the worker processes, the CRM emulator, the database
  (and Redis) and this script's 0.1 s ledger poll; the single-process section is `Job throughput ({backend})`.
- Method: CRM emulator subprocess (`python -m membersync.sandbox.crm --latency {latency}`), `DemoCrmProvider`;
  all messages are queued before the worker starts; runs one after another on the same database."""
    load = f"{members:,} members per run, latency {latency * 1000:.0f} ms, job_batch_size 50, {queue}"
    load += f", {processes} worker processes"
    return section(f"Job throughput, {processes} worker processes ({backend})", backend, load, body)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3_200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--switch-interval", type=float, help="experiment: sys.setswitchinterval() for this run")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (> 1: a `membersync worker`)")
    args = parser.parse_args()
    if args.processes < 1 or any(threads % args.processes for threads, _ in PROCESS_RUNS):
        parser.error(f"--processes must divide the thread counts {[threads for threads, _ in PROCESS_RUNS]}")
    if args.processes > 1 and args.switch_interval is not None:
        parser.error("--switch-interval applies to the in-process worker only")
    quiet_logs()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    redis = args.backend == "postgres"
    with hard_limit(TIME_BOUND_SECONDS + 60), ExitStack() as stack:
        db = stack.enter_context(temp_database(args.backend))
        if redis:
            stack.enter_context(redis_queue_keys(db.settings(redis=True), AUDIENCE_SYNC_QUEUE))
        results = run(db, args.members, args.latency, redis, args.processes)
    if args.processes > 1:
        content = render_processes(args.backend, args.members, args.latency, args.processes, results)
        publish(f"job_throughput_processes-{args.backend}", content, enabled=not args.no_doc)
        return
    content = render(args.backend, args.members, args.latency, results)
    publish(f"job_throughput-{args.backend}", content, enabled=not args.no_doc)


if __name__ == "__main__":
    main()
