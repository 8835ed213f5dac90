"""Public fakes for provider authors and membersync's own tests.

- `FakeSyncProvider`: a provider with the seed's knobs (name, refresh, login age, availability, members
  query), an `on_sync` callback and a `sync_call_count`.
- `FrozenClock`: a clock that moves only when told to (`clock.advance(hours=2)`); pass it to
  `build_runtime(settings, clock=clock)` to simulate staleness without waiting.
- `InMemoryQueue`: records the messages a dispatch would send; run the jobs with `runtime.runner().run_until_idle()`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, false, select

from membersync.clock import FrozenClock
from membersync.jobs.queue import InMemoryQueue
from membersync.models import Member, Tenant
from membersync.provider.base import BaseSyncProvider
from membersync.provider.context import SyncContext

__all__ = ["FakeSyncProvider", "FrozenClock", "InMemoryQueue"]

OnSync = Callable[[Member, SyncContext], Awaitable[None] | None]


class FakeSyncProvider(BaseSyncProvider):
    """A configurable provider. Assign `on_sync` to act during `sync()`; read `sync_call_count` after."""

    def __init__(
        self,
        provider_name: str = "fake",
        refresh: timedelta | None = None,
        login_age: timedelta | None = None,
        available_for_tenant: bool = True,
        members_query: Callable[[Tenant], Select[Member]] | None = None,
    ) -> None:
        self.name = provider_name
        self.refresh_interval = timedelta(hours=1) if refresh is None else refresh
        self.max_age_on_login = login_age
        self.available = available_for_tenant
        self.members_query = members_query
        self.on_sync: OnSync | None = None
        self.sync_call_count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._count_lock = threading.Lock()

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        if self.members_query is None:
            return select(Member).where(false())
        return self.members_query(tenant)

    def is_available_for_tenant(self, tenant: Tenant) -> bool:
        return self.available

    async def sync(self, member: Member, ctx: SyncContext) -> None:
        with self._count_lock:
            self.sync_call_count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._run_callback(member, ctx)
        finally:
            with self._count_lock:
                self.in_flight -= 1

    async def _run_callback(self, member: Member, ctx: SyncContext) -> None:
        if self.on_sync is None:
            return
        result: Any = self.on_sync(member, ctx)
        if asyncio.iscoroutine(result):
            await result
