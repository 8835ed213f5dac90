"""The demo's sync provider: members of the emulated CRM, written the way a provider author would."""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import Select

from membersync.errors import PluginError
from membersync.models import Member, Tenant
from membersync.provider.base import BaseSyncProvider
from membersync.provider.context import SyncContext
from membersync.provider.registry import ProviderRegistry


class DemoCrmProvider(BaseSyncProvider):
    name = "demo_crm"
    refresh_interval = timedelta(hours=6)
    max_age_on_login: timedelta | None = timedelta(minutes=30)

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        return self.members_logged_in_within(days=30)

    async def sync(self, member: Member, ctx: SyncContext) -> None:
        data = await ctx.http.get_json(f"{self.base_url}/members/{quote(member.email)}")
        await ctx.save_profile(member, data, external_id=data["id"])
        await ctx.set_meta(member, "total_donations", data["total_donations"])
        if data["is_active_member"]:
            await ctx.grant(member, f"membership:{data['tier']}")
        else:
            await ctx.revoke_all(member)


DEMO_CRM_URL_ENV = "MEMBERSYNC_DEMO_CRM_URL"


def register_from_env(registry: ProviderRegistry) -> None:
    """Plug-in entry for worker processes: `MEMBERSYNC_PLUGINS=membersync.sandbox.demo_provider:register_from_env`
    with the emulator's URL in `MEMBERSYNC_DEMO_CRM_URL`."""
    url = os.environ.get(DEMO_CRM_URL_ENV)
    if not url:
        raise PluginError(f"{DEMO_CRM_URL_ENV} must be set to the CRM emulator's URL")
    registry.register(DemoCrmProvider(url))
