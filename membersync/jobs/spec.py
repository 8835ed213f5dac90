"""What a job declares beside its definition: name, queue, retries, de-duplication."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from membersync.jobs.ledger import ClaimedJob


@dataclass(frozen=True)
class RetryStrategy:
    max_attempts: int = 3
    delay: timedelta = timedelta(seconds=60)


@dataclass(frozen=True)
class JobSpec:
    """A kind of job. `unique_for` de-duplicates on the job's (tenant, entity, target) while it is pending."""

    name: str
    queue: str
    retry: RetryStrategy = field(default_factory=RetryStrategy)
    unique_for: timedelta | None = None
    lock: Callable[[ClaimedJob], str | None] | None = None

    def lock_key(self, job: ClaimedJob) -> str | None:
        """The lock this job runs under (shared with other paths touching the same data), if any."""
        return None if self.lock is None else self.lock(job)

    def dedup_key(self, tenant_id: int | None, entity_id: int | None, target: str | None) -> str | None:
        if self.unique_for is None:
            return None
        return f"{self.name}:{tenant_id}:{entity_id}:{target}"


Finalizer = Callable[[AsyncSession, datetime], Awaitable[None]]
JobHandler = Callable[["ClaimedJob"], Awaitable[Finalizer | None]]
# Loads what a batch of jobs needs in a few queries; the result for a job id reaches it as `job.preloaded`.
BatchPreload = Callable[[Sequence["ClaimedJob"]], Awaitable[Mapping[int, Any]]]


@dataclass
class JobRegistry:
    """Job kinds and their handlers, by name."""

    specs: dict[str, JobSpec] = field(default_factory=dict)
    handlers: dict[str, JobHandler] = field(default_factory=dict)
    preloads: dict[str, BatchPreload] = field(default_factory=dict)

    def add(self, spec: JobSpec, handler: JobHandler | None = None, preload: BatchPreload | None = None) -> None:
        self.specs[spec.name] = spec
        if handler is not None:
            self.handlers[spec.name] = handler
        if preload is not None:
            self.preloads[spec.name] = preload

    def spec(self, name: str) -> JobSpec:
        return self.specs[name]

    def handler(self, name: str) -> JobHandler | None:
        return self.handlers.get(name)

    def describe(self) -> dict[str, Any]:
        return {name: spec.queue for name, spec in self.specs.items()}
