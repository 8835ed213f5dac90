"""Possible duplicate members: find them across a tenant, list them, merge or dismiss a pair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.pagination import decode_cursor
from membersync.duplicate import repository
from membersync.errors import Conflict as ConflictError
from membersync.errors import InvalidInput, NotFound
from membersync.identity import repository as identity_repository
from membersync.identity.matching import Candidate, Thresholds, find_duplicates
from membersync.identity.state import MemberState, state_of
from membersync.identity.writes import audit_changes, updated_row
from membersync.models import DuplicatePair, Member

STATUSES = ("pending", "dismissed", "merged")


@dataclass(frozen=True)
class ScanSummary:
    members: int
    pairs: int
    new_pairs: int


@dataclass(frozen=True)
class MergeSummary:
    survivor_id: int
    merged_id: int
    fields_filled: tuple[str, ...]


def _candidate(row: Any) -> Candidate:
    member_id, email, phone, given, family, full, address = row
    return Candidate(member_id, email, phone, given, family, full, (address or {}).get("postal_code"))


async def scan(
    session: AsyncSession,
    tenant_id: int,
    now: datetime,
    *,
    thresholds: Thresholds | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> ScanSummary:
    """Compare the tenant's members within blocking keys (never all pairs) and record possible duplicates."""
    candidates: list[Candidate] = []
    async for rows in repository.stream_candidates(session, tenant_id):
        candidates += [_candidate(row) for row in rows]
        if progress is not None:
            progress("loaded", len(candidates))
    pairs = list(find_duplicates(candidates, thresholds or Thresholds()))
    rows = [
        {
            "tenant_id": tenant_id,
            "first_member_id": pair.first_id,
            "second_member_id": pair.second_id,
            "score": pair.score,
            "reasons": list(pair.reasons),
            "status": "pending",
            "created_at": now,
            "updated_at": now,
        }
        for pair in pairs
    ]
    new = 0
    for start in range(0, len(rows), 1000):
        new += await repository.insert_pairs(session, rows[start : start + 1000])
    if progress is not None:
        progress("compared", len(candidates))
    return ScanSummary(members=len(candidates), pairs=len(pairs), new_pairs=new)


async def list_pairs(
    session: AsyncSession, tenant_id: int, *, cursor: str | None, limit: int, status: str | None = "pending"
) -> tuple[list[DuplicatePair], str | None]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: must be one of {', '.join(STATUSES)}")
    rows = await repository.page(session, tenant_id, after=decode_cursor(cursor), limit=limit, status=status)
    items = rows[:limit]
    return items, str(items[-1].id) if len(rows) > limit else None


async def _pending_pair(session: AsyncSession, tenant_id: int, pair_id: int) -> DuplicatePair:
    pair = await repository.pair_for_update(session, tenant_id, pair_id)
    if pair is None:
        raise NotFound(f"duplicate pair {pair_id} not found")
    if pair.status != "pending":
        raise ConflictError(f"duplicate pair {pair_id} is already {pair.status}")
    return pair


async def dismiss(session: AsyncSession, tenant_id: int, pair_id: int, now: datetime, *, actor: str) -> DuplicatePair:
    """Not the same person: the pair is kept as dismissed, so later scans do not raise it again."""
    pair = await _pending_pair(session, tenant_id, pair_id)
    pair.status, pair.resolved_by, pair.resolved_at, pair.updated_at = "dismissed", actor, now, now
    await session.flush()
    return pair


async def merge(
    session: AsyncSession, tenant_id: int, pair_id: int, now: datetime, *, actor: str, survivor_id: int | None = None
) -> MergeSummary:
    """One person: the other member's links, profiles, entitlements, meta, history and conflicts move to the
    survivor (the older member unless named), its values fill the survivor's empty fields, and it is deleted."""
    pair = await _pending_pair(session, tenant_id, pair_id)
    if pair.first_member_id is None or pair.second_member_id is None:
        raise ConflictError(f"duplicate pair {pair_id}: one of its members no longer exists")
    ids = [pair.first_member_id, pair.second_member_id]
    survivor_id = survivor_id or min(ids)
    if survivor_id not in ids:
        raise InvalidInput(f"survivor_id: must be {ids[0]} or {ids[1]}")
    loser_id = ids[1] if survivor_id == ids[0] else ids[0]
    members = await repository.members_for_update(session, tenant_id, ids)
    survivor, loser = members[survivor_id], members[loser_id]
    shared = await repository.shared_link_sources(session, tenant_id, loser_id, survivor_id)
    if shared:
        # Each is a separate record there: merged here, the next pull would bring the other one back.
        raise ConflictError(
            f"members {survivor_id} and {loser_id} are both linked in {', '.join(shared)}: merge the records "
            "there first, or delete one member's link"
        )
    filled = _fill(state := state_of(survivor), state_of(loser))
    pair.status, pair.resolved_by, pair.resolved_at, pair.updated_at = "merged", actor, now, now
    await session.flush()
    await repository.drop_other_pairs(session, loser_id, pair.id)
    await repository.move_records(session, loser_id, survivor_id)
    await repository.delete_member(session, loser_id)
    await identity_repository.update_members(session, [updated_row(state, now)])
    await identity_repository.insert_audit(session, _merge_audit(survivor, loser, state, filled, pair, now, actor))
    return MergeSummary(survivor_id, loser_id, tuple(filled))


def _fill(survivor: MemberState, loser: MemberState) -> list[str]:
    """Copy the loser's values into fields the survivor has no value for."""
    filled = []
    for name, value in sorted(loser.values.items()):
        if name != "email" and survivor.values.get(name) is None:
            source = loser.sources.get(name, {})
            survivor.values[name], survivor.sources[name] = value, source
            filled.append(name)
    return filled


def _merge_audit(
    survivor: Member,
    loser: Member,
    state: MemberState,
    filled: list[str],
    pair: DuplicatePair,
    now: datetime,
    actor: str,
) -> list[dict[str, Any]]:
    merged = {"member_id": loser.id, "email": loser.email, "name": loser.name}
    filling = [(name, None, state.values[name]) for name in filled]
    changes = audit_changes([("merged_member", merged, {"member_id": survivor.id}), *filling])
    entry = {"tenant_id": survivor.tenant_id, "member_id": survivor.id, "source": "local", "actor": actor, "at": now}
    return [entry | {"operation": "merge", "operation_id": pair.id, "changes": changes}]
