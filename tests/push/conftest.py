"""A push destination wired to the emulator over an in-process transport, and the limiter of the backend:
a SQLite file beside SQLite, Redis beside PostgreSQL (as a distributed deployment runs them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from redis.asyncio import Redis

from membersync.clock import FrozenClock
from membersync.destinations.subscribers import SubscriberApi
from membersync.http import HttpClient
from membersync.ratelimit import RateLimit, RedisRateLimiter
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestination as Emulator
from membersync.sandbox.push_destination import create_push_destination_app
from tests.conftest import REDIS_URL, require_service

URL = "http://destination.test/batches"


@pytest.fixture
def emulator(clock: FrozenClock) -> Emulator:
    return Emulator(clock=clock.now)


@pytest.fixture
async def pushing(runtime: Runtime, emulator: Emulator, database_url: str) -> AsyncIterator[Runtime]:
    """The runtime with destination "subscribers" (50 batches an hour) answering from the emulator."""
    await runtime.http.aclose()
    transport = httpx.ASGITransport(app=create_push_destination_app(emulator))
    runtime.http = HttpClient(httpx.AsyncClient(transport=transport))
    add_destination(runtime, SubscriberApi(URL, "sandbox-key"))
    redis: Redis | None = None
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    if database_url.startswith("postgresql"):
        require_service("Redis", "127.0.0.1", 6379)
        redis = Redis.from_url(REDIS_URL)
        runtime.rate_limiter = RedisRateLimiter(redis, namespace)
    yield runtime
    if redis is not None:
        keys = [key async for key in redis.scan_iter(f"membersync:{namespace}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def add_destination(runtime: Runtime, destination: SubscriberApi) -> None:
    runtime.destinations.register(destination)


def hourly(limit: int = 50) -> RateLimit:
    return RateLimit(limit, timedelta(hours=1))
