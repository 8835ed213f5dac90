"""Writing what a page decided: one statement per kind of row, whatever the page size."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.overlap import in_flight
from membersync.identity import repository
from membersync.identity.matching import MatchDecision
from membersync.identity.merge import Change, OpenConflict
from membersync.identity.page import Page, Target, name_key
from membersync.identity.schemas import NormalisedRecord
from membersync.identity.state import MemberState, column_values
from membersync.tracker.bulk import SyncedLink, synced_rows, write_synced
from membersync.tracker.entities import EntityRef
from membersync.tracker.service import Tracker


async def write_page(
    session: AsyncSession,
    tracker: Tracker,
    page: Page,
    records: list[tuple[NormalisedRecord, str | None]],
    now: datetime,
    actor: str,
    operation: str,
    details: dict[str, Any],
) -> int:
    """Record the page's operation with its `details` and write what the page decided under it; the operation's id.

    On PostgreSQL each statement runs while the rows of the next are built: the operation while the new members'
    rows are, the members insert while the audit rows are, the audit insert while the link rows are (new members
    are numbered before they are inserted)."""
    await _reserve_enough(session, page)
    recording = repository.record_operation(session, page.tenant_id, page.source, operation, now, details)
    async with in_flight(session, recording) as recorded:
        numbered = _number_created(page, now)
        operation_id = await recorded
    async with in_flight(session, repository.insert_numbered_members(session, numbered)) as members_written:
        audit = _audit_insert(session, page, now, actor, operation, operation_id)
        await members_written
    changed = [target for target in page.targets.values() if not target.created and target.state.changed]
    await repository.update_members(session, [updated_row(target.state, now) for target in changed])
    async with in_flight(session, session.execute(*audit) if audit else _nothing()) as audited:
        links = _link_rows(tracker, page, records, now)
        await audited
    await repository.upsert_conflicts(
        session,
        [
            _conflict_row(page, target, conflict, now)
            for target in page.targets.values()
            for conflict in target.conflicts
        ],
    )
    await repository.insert_duplicate_pairs(
        session, [_pair_row(page, target, other, decision, now) for target, other, decision in page.duplicates]
    )
    if links:
        await write_synced(session, page.source, links, replace_metadata=False)
    return operation_id


async def _reserve_enough(session: AsyncSession, page: Page) -> None:
    """Make sure the page holds an id for each member it creates (`repository.reserve_member_ids`): one more may
    be created than were counted when they were drawn, when a member matched earlier in the page was gone when it
    was read."""
    creating = sum(target.created for target in page.targets.values())
    if len(page.reserved_ids) < creating:
        page.reserved_ids = await repository.reserve_member_ids(session, creating)


def _number_created(page: Page, now: datetime) -> list[dict[str, Any]]:
    """Give each member the page creates one of the ids reserved for it; their rows, ids in."""
    created = [target for target in page.targets.values() if target.created]
    rows = [_new_member_row(page, target, now) for target in created]
    for target, row, member_id in zip(created, rows, page.reserved_ids[: len(rows)], strict=True):
        target.state.member_id = row["id"] = member_id
    return rows


def member_row(state: MemberState, now: datetime) -> dict[str, Any]:
    """Every members column a state fills, its name key, and `updated_at`: what an insert or update writes."""
    return column_values(state) | {"name_key": name_key(state.values), "updated_at": now}


def updated_row(state: MemberState, now: datetime) -> dict[str, Any]:
    """`member_row` of an existing member, as `repository.update_members` takes it."""
    return member_row(state, now) | {"id": state.member_id}


def _new_member_row(page: Page, target: Target, now: datetime) -> dict[str, Any]:
    return member_row(target.state, now) | {"tenant_id": page.tenant_id, "created_at": now}


def _audit_insert(
    session: AsyncSession, page: Page, now: datetime, actor: str, operation: str, operation_id: int
) -> tuple[Any, ...] | None:
    """The audit insert (statement and parameters) for every change the page made, None when it made none."""
    rows = [
        _audit_row(page, target, source, changes, now, actor, operation, operation_id)
        for target in page.targets.values()
        for source, changes in _audited_changes(target).items()
    ]
    return repository.audit_insert(session, rows) if rows else None


async def _nothing() -> None:
    return None


def _audited_changes(target: Target) -> dict[str, dict[str, list[Any]]]:
    """What the page changed in the member, by source: every value of a member it created, else its changes."""
    if not target.created:
        return _changes_by_source(target.changes)
    by_source: dict[str, dict[str, list[Any]]] = {}
    for name, value in target.state.values.items():
        by_source.setdefault(target.state.sources[name]["source"], {})[name] = [None, value]
    return by_source


def _changes_by_source(changes: list[Change]) -> dict[str, dict[str, list[Any]]]:
    """A member's changes as audit rows hold them (see `audit_changes`), by the source they came from (a page has
    one). A page may change a field twice (two records of one person): the row keeps the first value and the last."""
    by_source: dict[str, dict[str, list[Any]]] = {}
    for change in changes:
        fields = by_source.setdefault(change.source, {})
        earlier = fields.get(change.field)
        fields[change.field] = [change.before if earlier is None else earlier[0], change.after]
    return by_source


def audit_changes(changes: Iterable[tuple[str, Any, Any]]) -> dict[str, list[Any]]:
    """(field, before, after) triples as an audit row's `changes` holds them: `{field: [before, after]}`."""
    return {field: [before, after] for field, before, after in changes}


def _audit_row(
    page: Page,
    target: Target,
    source: str,
    changes: dict[str, list[Any]],
    now: datetime,
    actor: str,
    operation: str,
    operation_id: int,
) -> dict[str, Any]:
    return {
        "tenant_id": page.tenant_id,
        "member_id": target.state.member_id,
        "changes": changes,
        "source": source,
        "operation": operation,
        "operation_id": operation_id,
        "actor": actor,
        "at": now,
    }


def _conflict_row(page: Page, target: Target, conflict: OpenConflict, now: datetime) -> dict[str, Any]:
    return {
        "tenant_id": page.tenant_id,
        "member_id": target.state.member_id,
        "source": conflict.incoming.source,
        "field": conflict.field,
        "current_value": conflict.current,
        "incoming_value": conflict.incoming.value,
        "incoming_changed_at": conflict.incoming.changed_at,
        "reason": conflict.reason[:255],
        "status": "pending",
        "created_at": now,
        "updated_at": now,
    }


def _pair_row(page: Page, target: Target, other: int, decision: MatchDecision, now: datetime) -> dict[str, Any]:
    member_id = target.state.member_id
    assert member_id is not None
    return {
        "tenant_id": page.tenant_id,
        "first_member_id": min(member_id, other),
        "second_member_id": max(member_id, other),
        "score": decision.score,
        "reasons": list(decision.reasons),
        "status": "pending",
        "created_at": now,
        "updated_at": now,
    }


def _link_rows(
    tracker: Tracker, page: Page, records: list[tuple[NormalisedRecord, str | None]], now: datetime
) -> list[dict[str, Any]]:
    """Each record's external id as its member's link row, with the record's fingerprint."""
    links = [
        SyncedLink(_ref(page, target), record.external_id, None, record.changed_at, fingerprint)
        for (record, fingerprint), target in zip(records, page.record_targets, strict=True)
        if target is not None and record.external_id
    ]
    return synced_rows(tracker.registry, page.source, links, now) if links else []


def _ref(page: Page, target: Target) -> EntityRef:
    return EntityRef("member", str(target.state.member_id), page.tenant_id)
