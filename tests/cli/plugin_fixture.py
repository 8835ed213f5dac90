"""Providers the CLI tests load through MEMBERSYNC_PLUGINS, the way a deployment would."""

from __future__ import annotations

from sqlalchemy import Select, select

from membersync.models import Member, Tenant
from membersync.provider.base import BaseSyncProvider
from membersync.provider.context import SyncContext
from membersync.provider.registry import ProviderRegistry

PLUGIN_MODULE = "tests.cli.plugin_fixture"
CRM = f"{PLUGIN_MODULE}:CrmProvider"
FLAKY = f"{PLUGIN_MODULE}:FlakyProvider"
BADLY_NAMED = f"{PLUGIN_MODULE}:BadlyNamedProvider"
REGISTER_BOTH = f"{PLUGIN_MODULE}:register_both"
NOT_A_PROVIDER = f"{PLUGIN_MODULE}:not_a_provider"


class CrmProvider(BaseSyncProvider):
    """Syncs every member of the tenant and records a profile for each."""

    name = "crm"

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        return select(Member)

    async def sync(self, member: Member, ctx: SyncContext) -> None:
        await ctx.save_profile(member, {"ok": True}, external_id=str(member.id))


class FlakyProvider(BaseSyncProvider):
    """Every sync fails: its jobs end up failed in the ledger once their attempts are used."""

    name = "flaky"

    def members_to_sync(self, tenant: Tenant) -> Select[Member]:
        return select(Member)

    async def sync(self, member: Member, ctx: SyncContext) -> None:
        raise RuntimeError("the remote CRM is down")


class BadlyNamedProvider(BaseSyncProvider):
    name = "Bad Name!"


def register_both(registry: ProviderRegistry) -> None:
    registry.register(CrmProvider)
    registry.register(FlakyProvider)


not_a_provider = 42
