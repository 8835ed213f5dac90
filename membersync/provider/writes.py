"""What one sync recorded, as plain rows; a batch of them is written with one statement per kind."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import insert_or_update
from membersync.models import Entitlement, ExternalProfile, MemberMeta, SyncOperation
from membersync.tracker.bulk import SyncedLink, synced_row, write_synced
from membersync.tracker.entities import EntityRef

MAX_ERROR_LENGTH = 2000
ENTITLEMENT_KEY = ["member_id", "source_provider", "resource_id"]


@dataclass
class SyncWrites:
    """The net effect of one member's sync with one provider, order of calls already resolved."""

    tenant_id: int
    member_id: int
    provider: str
    kind: str
    started_at: datetime
    job_id: int | None = None
    profile_data: dict[str, Any] | None = None
    external_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, datetime | None] = field(default_factory=dict)
    revokes: set[str] = field(default_factory=set)
    revoke_all: bool = False

    def grant(self, resource_id: str, expires_at: datetime | None) -> None:
        self.grants[resource_id] = expires_at
        self.revokes.discard(resource_id)

    def revoke(self, resource_id: str) -> None:
        self.grants.pop(resource_id, None)
        self.revokes.add(resource_id)

    def clear_entitlements(self) -> None:
        self.grants.clear()
        self.revokes.clear()
        self.revoke_all = True

    async def __call__(self, session: AsyncSession, now: datetime) -> None:
        await apply_many(session, [self], now)

    @staticmethod
    async def apply_many(session: AsyncSession, items: Sequence[Any], now: datetime) -> None:
        await apply_many(session, items, now)


def _owned(item: SyncWrites) -> dict[str, Any]:
    return {"tenant_id": item.tenant_id, "member_id": item.member_id}


async def _revoke(session: AsyncSession, items: Sequence[SyncWrites]) -> None:
    everything = [(item.member_id, item.provider) for item in items if item.revoke_all]
    if everything:
        pairs = tuple_(Entitlement.member_id, Entitlement.source_provider).in_(everything)
        await session.execute(delete(Entitlement).where(pairs))
    some = [(item.member_id, item.provider, resource) for item in items for resource in item.revokes]
    if some:
        triples = tuple_(Entitlement.member_id, Entitlement.source_provider, Entitlement.resource_id).in_(some)
        await session.execute(delete(Entitlement).where(triples))


async def _grant(session: AsyncSession, items: Sequence[SyncWrites], now: datetime) -> None:
    rows = [
        _owned(item)
        | {"source_provider": item.provider, "resource_id": resource, "expires_at": expires_at}
        | {"created_at": now, "updated_at": now}
        for item in items
        for resource, expires_at in item.grants.items()
    ]
    if rows:
        update = ["expires_at", "updated_at"]
        statement = insert_or_update(dialect_of(session), Entitlement, ENTITLEMENT_KEY, {}, update)
        await session.execute(statement.values(rows))


async def _meta(session: AsyncSession, items: Sequence[SyncWrites], now: datetime) -> None:
    rows = [
        _owned(item) | {"key": key, "value": value, "updated_at": now}
        for item in items
        for key, value in item.meta.items()
    ]
    if rows:
        statement = insert_or_update(dialect_of(session), MemberMeta, ["member_id", "key"], {}, ["value", "updated_at"])
        await session.execute(statement.values(rows))


def _profile_row(item: SyncWrites, now: datetime) -> dict[str, Any]:
    return _owned(item) | {
        "provider": item.provider,
        "data": item.profile_data or {},
        "external_id": item.external_id,
        "synced_at": now,
        "status": "synced",
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }


async def _profiles(session: AsyncSession, items: Sequence[SyncWrites], now: datetime) -> None:
    """Mark each profile synced; data and external id are replaced only when the sync gave them."""
    groups: dict[tuple[bool, bool], list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        groups[(item.profile_data is not None, item.external_id is not None)].append(_profile_row(item, now))
    for (has_data, has_external_id), rows in groups.items():
        update = ["synced_at", "status", "last_error", "updated_at"]
        update += ["data"] * has_data + ["external_id"] * has_external_id
        statement = insert_or_update(dialect_of(session), ExternalProfile, ["member_id", "provider"], {}, update)
        await session.execute(statement.values(rows))


async def _links(session: AsyncSession, items: Sequence[SyncWrites], now: datetime) -> None:
    """Link each member to the external id its provider gave, in the tracker (the provider is the source)."""
    by_source: dict[str, dict[tuple[int, int], dict[str, Any]]] = defaultdict(dict)
    for item in items:
        if item.external_id is not None:
            ref = EntityRef("member", str(item.member_id), item.tenant_id)
            link = SyncedLink(ref, item.external_id)
            by_source[item.provider][(item.tenant_id, item.member_id)] = synced_row(ref, item.provider, link, now)
    for source, rows in by_source.items():
        await write_synced(session, source, list(rows.values()), replace_metadata=False)


async def _operations(session: AsyncSession, items: Sequence[SyncWrites], now: datetime) -> None:
    rows = [
        _owned(item)
        | {"provider": item.provider, "kind": item.kind, "status": "succeeded", "job_id": item.job_id}
        | {"error": None, "started_at": item.started_at, "finished_at": now}
        for item in items
    ]
    await session.execute(insert(SyncOperation), rows)


async def apply_many(session: AsyncSession, items: Sequence[SyncWrites], now: datetime) -> None:
    """Write the recorded effects of many syncs: revocations, grants, meta, profiles, tracker links, operation log."""
    if not items:
        return
    await _revoke(session, items)
    await _grant(session, items, now)
    await _meta(session, items, now)
    await _profiles(session, items, now)
    await _links(session, items, now)
    await _operations(session, items, now)
