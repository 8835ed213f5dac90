"""The `SyncProvider` contract and `BaseSyncProvider`, which supplies the seed's defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import Select, false, select

from membersync.clock import Clock, SystemClock
from membersync.models import Member, Tenant

if TYPE_CHECKING:
    from membersync.provider.context import SyncContext


@runtime_checkable
class SyncProvider(Protocol):
    """What membersync needs of a provider; scheduling, locks, retries and freshness are not its business."""

    name: str
    refresh_interval: timedelta
    max_age_on_login: timedelta | None

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        """Members in scope for scheduled runs (membersync adds the tenant filter itself)."""
        ...

    def is_available_for_tenant(self, tenant: Tenant) -> bool: ...

    def sync(self, member: Member, ctx: SyncContext) -> Any:
        """Fetch the member's data and record it through `ctx`; `async def` or a plain function."""
        ...


class BaseSyncProvider:
    """Defaults: hourly refresh, background only, available everywhere, no members scheduled."""

    name: str = ""
    refresh_interval: timedelta = timedelta(hours=1)
    max_age_on_login: timedelta | None = None
    clock: Clock = SystemClock()

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        return select(Member).where(false())

    def is_available_for_tenant(self, tenant: Tenant) -> bool:
        return True

    def members_logged_in_within(self, days: float) -> Select[Member]:
        """Members whose `last_active_at` falls within the last `days` days."""
        cutoff = self.clock.now() - timedelta(days=days)
        return select(Member).where(Member.last_active_at >= cutoff)

    def sync(self, member: Member, ctx: SyncContext) -> Any:
        raise NotImplementedError(f"provider {self.name!r} must implement sync()")
