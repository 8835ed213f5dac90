"""Delivery of ledger row ids to workers. huey carries the messages; the ledger stays the truth."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from huey import Huey, RedisHuey, SqliteHuey

from membersync.config import Settings

RUN_BATCH_TASK = "jobs.run_batch"
AUDIENCE_SYNC_QUEUE = "audience-sync"
# Pushes to destinations: a queue of its own, so a rate-limited push never waits behind a sync backlog.
USER_SYNC_QUEUE = "user-sync"
QUEUES = (AUDIENCE_SYNC_QUEUE, USER_SYNC_QUEUE)

BatchExecutor = Callable[[list[int]], None]


class JobQueue(Protocol):
    def send(self, queue: str, job_ids: Sequence[int], eta: datetime | None = None) -> None:
        """Deliver these ledger rows to the workers of `queue` (blocking; call it off the event loop)."""


def chunked(job_ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(job_ids[start : start + size]) for start in range(0, len(job_ids), size)]


def build_huey(settings: Settings, queue: str) -> Huey:
    """One huey instance per queue: SqliteHuey in the data directory, or RedisHuey when a Redis URL is set."""
    name = f"{settings.queue_namespace}{queue}"
    if settings.redis_url:
        return RedisHuey(name=name, url=settings.redis_url, results=False)
    settings.queue_file.parent.mkdir(parents=True, exist_ok=True)
    # The queue table stays small: a page cache of 1 MB per thread is plenty (huey defaults to 8 MB).
    return SqliteHuey(name=name, filename=str(settings.queue_file), results=False, timeout=30, cache_mb=1)


def _undeliverable(job_ids: list[int]) -> None:
    raise RuntimeError("this huey instance only sends messages; run `membersync worker` to execute them")


def register_batch_task(huey: Huey, executor: BatchExecutor | None = None) -> Any:
    """The one huey task: run a batch of ledger rows. Producers register it without an executor."""
    run = executor or _undeliverable

    def run_batch(job_ids: list[int]) -> None:
        run(job_ids)

    return huey.task(name=RUN_BATCH_TASK)(run_batch)


@dataclass
class HueyQueue:
    settings: Settings
    batch_size: int
    _hueys: dict[str, Huey] = field(default_factory=dict)
    _tasks: dict[str, Any] = field(default_factory=dict)

    def huey(self, queue: str) -> Huey:
        if queue not in self._hueys:
            self._hueys[queue] = build_huey(self.settings, queue)
            self._tasks[queue] = register_batch_task(self._hueys[queue])
        return self._hueys[queue]

    def send(self, queue: str, job_ids: Sequence[int], eta: datetime | None = None) -> None:
        self.huey(queue)
        task = self._tasks[queue]
        for batch in chunked(job_ids, self.batch_size):
            if eta is None:
                task(batch)
            else:
                task.schedule(args=(batch,), eta=eta)

    def pending(self, queue: str) -> int:
        return int(self.huey(queue).pending_count())

    def close(self) -> None:
        for huey in self._hueys.values():
            huey.storage.close()


@dataclass
class InMemoryQueue:
    """Records what would be sent; tests and the in-process runner read it."""

    sent: list[tuple[str, list[int], datetime | None]] = field(default_factory=list)

    def send(self, queue: str, job_ids: Sequence[int], eta: datetime | None = None) -> None:
        self.sent.append((queue, list(job_ids), eta))

    def sent_ids(self, queue: str | None = None) -> list[int]:
        return [job_id for name, ids, _ in self.sent if queue in (None, name) for job_id in ids]

    def clear(self) -> None:
        self.sent.clear()
