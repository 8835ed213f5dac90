"""`SyncContext`: what a provider's `sync()` receives. Its writes are buffered and applied atomically.

A provider usually calls a remote API and then records the answer. Buffering the writes keeps the
database transaction out of the network wait, and a provider that raises part-way leaves nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.clock import Clock
from membersync.http import HttpClient
from membersync.models import Member, Tenant
from membersync.provider.writes import SyncWrites


@dataclass
class SyncContext:
    """Carries the tenant, a read session, the HTTP client, the clock, the provider's settings and the writers.

    `session` is for reads only; record results with `save_profile`, `set_meta`, `grant`, `revoke` and
    `revoke_all`. They are idempotent and take effect together when `sync()` returns.
    """

    tenant: Tenant
    provider: str
    session: AsyncSession
    http: HttpClient
    clock: Clock
    writes: SyncWrites
    settings: dict[str, Any] = field(default_factory=dict)

    async def save_profile(self, member: Member, data: dict[str, Any], external_id: str | None = None) -> None:
        """Store the provider's record of the member (its data and its id in the provider)."""
        self.writes.profile_data = dict(data)
        self.writes.external_id = None if external_id is None else str(external_id)

    async def set_meta(self, member: Member, key: str, value: Any) -> None:
        self.writes.meta[key] = value

    async def grant(self, member: Member, resource_id: str, expires_at: datetime | None = None) -> None:
        """Grant an entitlement keyed on this provider; granting again updates its expiry."""
        self.writes.grant(resource_id, expires_at)

    async def revoke(self, member: Member, resource_id: str) -> None:
        self.writes.revoke(resource_id)

    async def revoke_all(self, member: Member) -> None:
        """Remove every entitlement this provider granted the member."""
        self.writes.clear_entitlements()
