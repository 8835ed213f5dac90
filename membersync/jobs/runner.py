"""Runs ledger rows: claim a batch in one statement, run the handlers, write results back in one transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.clock import Clock
from membersync.db.engine import Database
from membersync.jobs import ledger, outbox
from membersync.jobs.ledger import ClaimedJob
from membersync.jobs.policy import decide_retry, describe_error
from membersync.jobs.queue import JobQueue
from membersync.jobs.spec import Finalizer, JobRegistry, RetryStrategy
from membersync.locks import Locks

logger = structlog.get_logger("membersync.jobs")


class PermanentJobError(Exception):
    """Raised by a handler when trying again cannot help; the job fails without further attempts."""


class RetryJobAt(Exception):
    """Raised by a handler whose failed attempt names when to try again (an HTTP `Retry-After`): the next
    attempt runs then rather than after the job's usual delay. It still counts as an attempt."""

    def __init__(self, message: str, at: datetime) -> None:
        super().__init__(message)
        self.at = at


class DeferJob(Exception):
    """Raised by a handler that could not start its work yet (no rate-limit budget): the job runs again at
    `at`, and this run does not count as an attempt."""

    def __init__(self, reason: str, at: datetime) -> None:
        super().__init__(reason)
        self.at = at


@dataclass(frozen=True)
class Outcome:
    job: ClaimedJob
    error: BaseException | None = None
    finalize: Finalizer | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


@dataclass
class BatchReport:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0

    def add(self, other: BatchReport) -> None:
        self.claimed += other.claimed
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.failed += other.failed
        self.deferred += other.deferred


@dataclass
class JobRunner:
    database: Database
    registry: JobRegistry
    queue: JobQueue
    clock: Clock
    lease: timedelta
    concurrency: int = 1
    retry_delay: timedelta | None = None
    locks: Locks | None = None
    _semaphore: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.concurrency)

    async def run_batch(self, job_ids: Sequence[int]) -> BatchReport:
        """Run the runnable rows among `job_ids`; rows already taken or not yet due are skipped."""
        async with self.database.sessions() as session:
            jobs = await ledger.claim(session, job_ids, self.clock.now(), self.lease)
            await session.commit()
        return await self._run(jobs)

    async def run_due(self, limit: int = 500, queue: str | None = None) -> BatchReport:
        """Claim and run due rows straight from the ledger, without waiting for messages."""
        async with self.database.sessions() as session:
            jobs = await ledger.claim_due(session, self.clock.now(), self.lease, limit, queue)
            await session.commit()
        return await self._run(jobs)

    async def run_until_idle(self, queue: str | None = None, limit: int = 500) -> BatchReport:
        total = BatchReport()
        while (report := await self.run_due(limit, queue)).claimed:
            total.add(report)
        return total

    async def _run(self, jobs: list[ClaimedJob]) -> BatchReport:
        if not jobs:
            return BatchReport()
        owner = uuid.uuid4().hex
        jobs, held = await self._take_locks(jobs, owner)
        try:
            jobs = await self._preload(jobs)
            outcomes = await asyncio.gather(*(self._execute(job) for job in jobs))
            return await self._write_back(outcomes)
        finally:
            if held and self.locks is not None:
                await self.locks.release_many(held, owner)

    async def _take_locks(self, jobs: list[ClaimedJob], owner: str) -> tuple[list[ClaimedJob], list[str]]:
        """Take the whole batch's locks in one round trip; a job whose lock is busy takes it itself later."""
        keys = {job.id: self._lock_key(job) for job in jobs}
        wanted = [key for key in keys.values() if key is not None]
        if not wanted or self.locks is None:
            return jobs, []
        # The locks expire with the lease: a dead worker's jobs and their locks come free together.
        taken = await self.locks.acquire_many(wanted, owner, self.lease.total_seconds())
        return [replace(job, lock_held=keys[job.id] in taken) for job in jobs], sorted(taken)

    async def _preload(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Give each job what its kind's preload fetched for the whole batch (after the locks are taken)."""
        by_name: dict[str, list[ClaimedJob]] = {}
        for job in jobs:
            if job.name in self.registry.preloads:
                by_name.setdefault(job.name, []).append(job)
        loaded: dict[int, Any] = {}
        for name, group in by_name.items():
            loaded.update(await self.registry.preloads[name](group))
        return [replace(job, preloaded=loaded.get(job.id)) for job in jobs] if loaded else jobs

    def _lock_key(self, job: ClaimedJob) -> str | None:
        spec = self.registry.specs.get(job.name)
        return None if spec is None else spec.lock_key(job)

    async def _execute(self, job: ClaimedJob) -> Outcome:
        handler = self.registry.handler(job.name)
        if handler is None:
            return Outcome(job, PermanentJobError(f"no handler for job {job.name!r} in this process"))
        async with self._semaphore:
            try:
                finalize = await handler(job)
            except Exception as error:
                return Outcome(job, error)
        return Outcome(job, finalize=finalize)

    async def _finalize_one(self, session: AsyncSession, outcome: Outcome, now: datetime) -> Outcome:
        """Apply one job's deferred writes in a savepoint, so its failure spares the others."""
        assert outcome.finalize is not None
        position = outbox.mark(session)
        try:
            async with session.begin_nested():
                await outcome.finalize(session, now)
        except Exception as error:
            outbox.drop_since(session, position)
            return Outcome(outcome.job, error)
        return outcome

    async def _finalize_alone(self, session: AsyncSession, outcome: Outcome, now: datetime) -> Outcome:
        """Apply the only deferred writes of the write-back, the first statements of its transaction: on failure
        the whole transaction is rolled back, which spares the two statements of a savepoint."""
        assert outcome.finalize is not None
        try:
            await outcome.finalize(session, now)
        except Exception as error:
            await session.rollback()
            outbox.drop(session)
            return Outcome(outcome.job, error)
        return outcome

    async def _finalize_group(self, session: AsyncSession, group: list[Outcome], now: datetime) -> list[Outcome]:
        """Apply deferred writes of one kind together when the kind offers `apply_many`; else one by one."""
        apply_many = getattr(type(group[0].finalize), "apply_many", None)
        if apply_many is not None and len(group) > 1:
            position = outbox.mark(session)
            try:
                async with session.begin_nested():
                    await apply_many(session, [outcome.finalize for outcome in group], now)
                return group
            except Exception:
                outbox.drop_since(session, position)
                logger.warning("jobs.bulk_write_failed_retrying_one_by_one", jobs=len(group))
        return [await self._finalize_one(session, outcome, now) for outcome in group]

    async def _finalize(self, session: AsyncSession, outcomes: Sequence[Outcome], now: datetime) -> list[Outcome]:
        finalizing = [outcome for outcome in outcomes if outcome.finalize is not None]
        if len(finalizing) == 1:
            [alone] = finalizing
            finished = await self._finalize_alone(session, alone, now)
            return [finished if outcome is alone else outcome for outcome in outcomes]
        groups: dict[type, list[Outcome]] = {}
        for outcome in outcomes:
            if outcome.finalize is not None:
                groups.setdefault(type(outcome.finalize), []).append(outcome)
        applied = {o.job.id: o for group in groups.values() for o in await self._finalize_group(session, group, now)}
        return [applied.get(outcome.job.id, outcome) for outcome in outcomes]

    async def _write_back(self, outcomes: Sequence[Outcome]) -> BatchReport:
        now = self.clock.now()
        report = BatchReport(claimed=len(outcomes))
        async with self.database.sessions() as session:
            outcomes = await self._finalize(session, outcomes, now)
            done = [outcome.job.id for outcome in outcomes if outcome.succeeded]
            await ledger.mark_succeeded(session, done, now)
            report.succeeded = len(done)
            for outcome in outcomes:
                if isinstance(outcome.error, DeferJob):
                    await self._record_failure(session, outcome.job, outcome.error)
                    report.deferred += 1
                elif outcome.error is not None:
                    retried = await self._record_failure(session, outcome.job, outcome.error)
                    report.retried += retried
                    report.failed += not retried
            pending = outbox.take(session)
            await session.commit()
        await outbox.send(self.queue, pending)
        return report

    def _strategy(self, name: str) -> RetryStrategy | None:
        spec = self.registry.specs.get(name)
        if spec is None:
            return None
        if self.retry_delay is None:
            return spec.retry
        return RetryStrategy(max_attempts=spec.retry.max_attempts, delay=self.retry_delay)

    async def _record_failure(self, session: AsyncSession, job: ClaimedJob, error: BaseException) -> bool:
        """Schedule the next attempt or record the failure; True when the job will run again."""
        now = self.clock.now()
        if isinstance(error, DeferJob):
            await ledger.mark_deferred(session, job.id, error.at)
            outbox.defer(session, job.queue, [job.id], eta=error.at)
            logger.info("job.deferred", job_id=job.id, job=job.name, until=error.at.isoformat(), reason=str(error))
            return True
        text = describe_error(error)
        strategy = self._strategy(job.name)
        permanent = strategy is None or isinstance(error, PermanentJobError)
        not_before = error.at if isinstance(error, RetryJobAt) else None
        decision = decide_retry(strategy or RetryStrategy(), job.attempts, now, permanent=permanent)
        if decision.run_at is not None and not_before is not None:
            decision = replace(decision, run_at=not_before)
        if decision.run_at is not None:
            await ledger.mark_retry(session, job.id, text, decision.run_at)
            outbox.defer(session, job.queue, [job.id], eta=decision.run_at)
            logger.warning("job.retry", job_id=job.id, job=job.name, attempt=job.attempts, error=text)
            return True
        await ledger.mark_failed(session, job.id, text, now)
        logger.error("job.failed", job_id=job.id, job=job.name, attempts=job.attempts, error=text)
        return False


async def sweep(runner: JobRunner, resend_after: timedelta, retention: timedelta | None = None) -> int:
    """Re-queue rows whose lease ran out (their worker died), re-send rows whose message was lost, and
    delete finished jobs older than `retention`."""
    async with runner.database.sessions() as session:
        now = runner.clock.now()
        by_queue = await ledger.recover(session, now, resend_after)
        pruned = await ledger.prune(session, now - retention) if retention is not None else 0
        await session.commit()
    if pruned:
        logger.info("jobs.pruned", count=pruned)
    messages = [outbox.PendingMessages(queue, ids) for queue, ids in by_queue.items()]
    await outbox.send(runner.queue, messages)
    recovered = sum(len(ids) for ids in by_queue.values())
    if recovered:
        logger.warning("jobs.recovered", count=recovered)
    return recovered
