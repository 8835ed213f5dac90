"""The composition root: engine, queue, locks, HTTP client, clock and registries, built once from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.clock import Clock, SystemClock
from membersync.config import Settings
from membersync.db.engine import Database, open_database
from membersync.destinations.contract import DestinationRegistry
from membersync.destinations.subscribers import SubscriberApi
from membersync.http import HttpClient, build_async_client
from membersync.jobs import outbox
from membersync.jobs.queue import HueyQueue, JobQueue
from membersync.jobs.runner import JobRunner
from membersync.jobs.spec import JobRegistry
from membersync.locks import DatabaseLocks, Locks, RedisLocks
from membersync.provider.registry import ProviderRegistry
from membersync.ratelimit import RateLimit, RateLimiter, RedisRateLimiter, SqliteRateLimiter
from membersync.tracker.entities import default_registry
from membersync.tracker.service import Tracker

ClaimBuilder = Callable[["Runtime", AsyncSession, Any], Awaitable[dict[str, Any]]]


@dataclass
class Runtime:
    settings: Settings
    database: Database
    clock: Clock
    providers: ProviderRegistry
    jobs: JobRegistry
    queue: JobQueue
    locks: Locks
    http: HttpClient
    tracker: Tracker = field(default_factory=lambda: Tracker(default_registry()))
    claim_builders: list[ClaimBuilder] = field(default_factory=list)
    redis: Redis | None = None
    retry_delay: timedelta | None = None
    rate_limiter: RateLimiter | None = None
    destinations: DestinationRegistry = field(default_factory=DestinationRegistry)

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter shared with every worker: beside the queue (Redis, or a file next to SqliteHuey's)."""
        if self.rate_limiter is None:
            if self.redis is not None:
                self.rate_limiter = RedisRateLimiter(self.redis, self.settings.queue_namespace)
            else:
                self.rate_limiter = SqliteRateLimiter(self.settings.rate_limit_file)
        return self.rate_limiter

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed at the end, jobs deferred inside it sent only after the commit."""
        async with self.database.sessions() as session:
            try:
                yield session
                pending = outbox.take(session)
                await session.commit()
            except BaseException:
                outbox.drop(session)
                raise
        await outbox.send(self.queue, pending)

    def runner(self) -> JobRunner:
        return JobRunner(
            database=self.database,
            registry=self.jobs,
            queue=self.queue,
            clock=self.clock,
            lease=timedelta(seconds=self.settings.job_lease_seconds),
            concurrency=self.settings.job_concurrency,
            retry_delay=self.retry_delay,
            locks=self.locks,
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.rate_limiter is not None:
            await self.rate_limiter.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        close = getattr(self.queue, "close", None)
        if close is not None:
            close()
        await self.database.dispose()


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    queue: JobQueue | None = None,
    providers: ProviderRegistry | None = None,
    http: HttpClient | None = None,
) -> Runtime:
    """Build everything the API, the worker and the CLI share. Nothing here reads the environment."""
    clock = clock or SystemClock()
    database = open_database(settings.effective_database_url)
    redis: Redis | None = Redis.from_url(settings.redis_url) if settings.redis_url else None
    locks: Locks = RedisLocks(redis) if redis is not None else DatabaseLocks(database, clock)
    providers = ProviderRegistry(clock) if providers is None else providers
    runtime = Runtime(
        settings=settings,
        database=database,
        clock=clock,
        providers=providers,
        tracker=Tracker(default_registry(lambda: [provider.name for provider in providers.all()])),
        jobs=JobRegistry(),
        queue=queue or HueyQueue(settings, settings.job_batch_size),
        locks=locks,
        http=http or HttpClient(build_async_client(max_connections=max(100, settings.job_concurrency * 4))),
        redis=redis,
        retry_delay=None
        if settings.job_retry_delay_seconds is None
        else timedelta(seconds=settings.job_retry_delay_seconds),
    )
    if settings.push_url and settings.push_api_key is not None:
        runtime.destinations.register(subscriber_api(settings))
    return runtime


def subscriber_api(settings: Settings) -> SubscriberApi:
    """The built-in push destination, from `MEMBERSYNC_PUSH_*` settings."""
    assert settings.push_url is not None
    assert settings.push_api_key is not None
    limit = RateLimit(settings.push_batches_per_period, timedelta(seconds=settings.push_period_seconds))
    return SubscriberApi(
        settings.push_url,
        settings.push_api_key.get_secret_value(),
        batch_size=settings.push_batch_size,
        rate_limit=limit,
    )
