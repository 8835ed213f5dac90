"""The worker process: a huey consumer whose threads each run an event loop with their own runtime.

One persistent loop and engine per thread: `asyncio.run()` per task with a shared engine hangs now and
then, and SQLAlchemy's async engines are bound to the loop that created them.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from huey import crontab

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.db.migrate import ensure_migrated
from membersync.heap import settle_startup_heap
from membersync.jobs.queue import AUDIENCE_SYNC_QUEUE, build_huey, register_batch_task
from membersync.jobs.runner import sweep
from membersync.logs import configure_logging
from membersync.runtime import Runtime
from membersync.scheduling.service import run_tick

logger = structlog.get_logger("membersync.worker")


@dataclass
class _ThreadState:
    loop: asyncio.Runner
    runtime: Runtime


@dataclass
class Worker:
    """Consumes one queue with `threads` threads; with `periodic`, also runs the tick and the sweeper."""

    settings: Settings
    threads: int
    queue: str = AUDIENCE_SYNC_QUEUE
    periodic: bool = True
    setup: Callable[[Runtime], object] | None = None
    _local: threading.local = field(default_factory=threading.local)
    _states: list[_ThreadState] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    consumer: Any = None

    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            loop = asyncio.Runner()
            runtime, _ = assemble(self.settings)
            if self.setup is not None:
                self.setup(runtime)
            settle_startup_heap()
            state = _ThreadState(loop, runtime)
            self._local.state = state
            with self._lock:
                self._states.append(state)
        return state

    def run_batch(self, job_ids: list[int]) -> None:
        state = self._state()
        report = state.loop.run(state.runtime.runner().run_batch(job_ids))
        logger.debug("jobs.batch", queue=self.queue, **asdict(report))

    def tick(self) -> None:
        state = self._state()
        report = state.loop.run(run_tick(state.runtime))
        logger.info("scheduling.tick", window=report.window.isoformat(), ran=report.ran, jobs=report.jobs)

    def sweep(self) -> None:
        state = self._state()
        lease = timedelta(seconds=self.settings.job_lease_seconds)
        retention = timedelta(days=self.settings.job_retention_days)
        state.loop.run(sweep(state.runtime.runner(), resend_after=lease, retention=retention))

    def build_consumer(self) -> Any:
        ensure_migrated(self.settings.effective_database_url)
        huey = build_huey(self.settings, self.queue)
        register_batch_task(huey, self.run_batch)
        # Each worker thread builds its loop and runtime as it starts, not on its first batch.
        huey.on_startup(name="membersync.thread_state")(self._state)
        # Every worker knows the periodic tasks: a scheduler's messages go to the shared queue and any worker
        # may take them. Only a consumer built with `periodic` enqueues them.
        huey.periodic_task(crontab(minute="*/5"), name="scheduling.tick")(self.tick)
        huey.periodic_task(crontab(minute="*"), name="jobs.sweep")(self.sweep)
        self.consumer = huey.create_consumer(
            workers=self.threads, worker_type="thread", periodic=self.periodic, initial_delay=0.05, max_delay=1.0
        )
        return self.consumer

    def run(self) -> None:
        """Run until SIGINT or SIGTERM (blocks; call from the main thread)."""
        self.build_consumer().run()
        self.close()

    def start(self) -> None:
        """Start the consumer's threads and return (for the demo). Signals keep their previous handlers:
        huey's only set a flag that nothing reads when the consumer is not `run()`."""
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self.build_consumer().start()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
        self.close()

    def http_retries(self) -> int:
        with self._lock:
            return sum(state.runtime.http.retries for state in self._states)

    def close(self) -> None:
        with self._lock:
            states, self._states = self._states, []
        for state in states:
            state.loop.run(state.runtime.aclose())
            state.loop.close()


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """On Linux, ask for SIGTERM when the parent dies, so a killed parent leaves no orphan workers."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _run_child(threads: int, periodic: bool, queue: str) -> None:
    _die_with_parent()
    try:
        settings = Settings()
        configure_logging(settings.log_level, json=settings.log_json or None)
        Worker(settings, threads=threads, queue=queue, periodic=periodic).run()
    except KeyboardInterrupt:
        # The parent's SIGINT reached this child before the consumer's own handler was in place: that is
        # still a request to stop, not a failure.
        return


def run_processes(processes: int, threads: int, *, periodic: bool, queue: str = AUDIENCE_SYNC_QUEUE) -> int:
    """Run `processes` worker processes of `threads` threads each (Python threads share one core; processes
    do not). Only the first runs the periodic tasks. SIGINT or SIGTERM stops them all gracefully."""
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_run_child, args=(threads, periodic and index == 0, queue), name=f"worker-{index}")
        for index in range(processes)
    ]
    for child in children:
        child.start()

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for child in children:
        child.join()
    return max((child.exitcode or 0 for child in children), default=0)
