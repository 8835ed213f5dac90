"""One lock interface, two backends: a lease row in the database, or Redis `SET NX PX`.

The login path and the worker take the same key, so a member is never synced with one provider twice
at once. Acquiring waits up to a bound and then gives up, so neither path can block the other for long.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import delete

from membersync.clock import Clock
from membersync.db.engine import Database
from membersync.db.upsert import insert_or_update
from membersync.models import Lock

POLL_INTERVAL_SECONDS = 0.02


class Locks(Protocol):
    def hold(self, key: str, *, wait: float, ttl: float) -> AbstractAsyncContextManager[bool]:
        """An async context manager yielding True when the lock was taken within `wait` seconds."""
        ...


def sync_lock_key(tenant_id: int, member_id: int, provider: str) -> str:
    return f"sync:{tenant_id}:{member_id}:{provider}"


class DatabaseLocks:
    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    async def try_acquire(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock.now()
        values = {"key": key, "owner": owner, "expires_at": now + timedelta(seconds=ttl)}
        # The conflict branch only takes over an expired lease: a live one stays with its holder.
        statement = insert_or_update(
            self._database.dialect, Lock, ["key"], values, ["owner", "expires_at"], where=Lock.expires_at < now
        ).returning(Lock.owner)
        async with self._database.sessions() as session:
            taken = await session.scalar(statement)
            await session.commit()
        return taken == owner

    async def release(self, key: str, owner: str) -> None:
        async with self._database.sessions() as session:
            await session.execute(delete(Lock).where(Lock.key == key, Lock.owner == owner))
            await session.commit()

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, ttl: float) -> AsyncIterator[bool]:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        taken = await self.try_acquire(key, owner, ttl)
        while not taken and time.monotonic() < deadline:
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
            taken = await self.try_acquire(key, owner, ttl)
        try:
            yield taken
        finally:
            if taken:
                await self.release(key, owner)


class RedisLocks:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, ttl: float) -> AsyncIterator[bool]:
        lock = self._redis.lock(
            f"membersync:lock:{key}", timeout=ttl, blocking_timeout=wait, sleep=POLL_INTERVAL_SECONDS
        )
        taken = bool(await lock.acquire())
        try:
            yield taken
        finally:
            if taken:
                await lock.release()
