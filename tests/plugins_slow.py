"""A provider for worker-process tests: its first sync signals that it started, then hangs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sqlalchemy import Select, select

from membersync.models import Member, Tenant
from membersync.provider.base import BaseSyncProvider
from membersync.provider.context import SyncContext

MARKER_DIR_ENV = "MEMBERSYNC_TEST_MARKER_DIR"
HANG_SECONDS = 60


class SlowProvider(BaseSyncProvider):
    name = "slow"

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        return select(Member)

    async def sync(self, member: Member, ctx: SyncContext) -> None:
        markers = Path(os.environ[MARKER_DIR_ENV])
        started = markers / "started"
        if not started.exists():
            started.write_text(str(os.getpid()))
            await asyncio.sleep(HANG_SECONDS)
        await ctx.save_profile(member, {"completed_by": os.getpid()})


class PidProvider(BaseSyncProvider):
    """Records which worker process synced each member."""

    name = "pid"

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        return select(Member)

    async def sync(self, member: Member, ctx: SyncContext) -> None:
        await ctx.save_profile(member, {"pid": os.getpid()})
