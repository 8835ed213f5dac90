"""`apply_records`: the one path a page of incoming member records takes — normalise, match, merge, audit."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.errors import InvalidInput
from membersync.identity import repository
from membersync.identity.matching import Candidate, MatchDecision, MatchKind, blocking_keys, decide
from membersync.identity.merge import MergeResult, OpenConflict, merge_record, new_member
from membersync.identity.normalize import normalize_record
from membersync.identity.schemas import MappedRecord, NormalisedRecord
from membersync.identity.settings import IdentityOptions, options_from
from membersync.identity.state import MemberState, column_values, state_of
from membersync.tracker.entities import EntityRef
from membersync.tracker.service import SyncedLink, Tracker

MAX_RECORDS_PER_CALL = 5000
MAX_DETAIL_ENTRIES = 5000
# A name block bigger than this (a very common name) is cut, oldest members first: matching on a name alone
# needs a second signal anyway, and phone and email candidates are never cut.
MAX_NAME_CANDIDATES = 200
MemberRow = Any  # a members row as loaded by `repository.candidates`: columns as attributes
MATCHED = {MatchKind.LINKED, MatchKind.EMAIL, MatchKind.PHONE, MatchKind.FUZZY}


@dataclass(frozen=True)
class ApplyResult:
    """What one page did, by record, and the operation whose details say why."""

    operation_id: int
    created: int
    updated: int
    unchanged: int
    conflicted: int
    rejected: int
    possible_duplicates: int
    rejected_fields: int
    member_ids: tuple[int | None, ...]


@dataclass
class _Target:
    """One member a page writes to (existing or about to be created), with what the page did to it."""

    state: MemberState
    created: bool
    changes: list[tuple[str, Any, Any, str]] = field(default_factory=list)
    conflicts: list[OpenConflict] = field(default_factory=list)


@dataclass
class _Page:
    tenant_id: int
    source: str
    options: IdentityOptions
    rows: dict[int, MemberRow]
    linked: dict[str, int]
    targets: dict[int, _Target] = field(default_factory=dict)  # by id() of the state: new ones have no id yet
    new_by_email: dict[str, _Target] = field(default_factory=dict)
    new_by_external_id: dict[str, _Target] = field(default_factory=dict)
    record_targets: list[_Target | None] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    duplicates: list[tuple[_Target, int, MatchDecision]] = field(default_factory=list)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    by_email: dict[str, MemberRow] = field(default_factory=dict)
    by_phone: dict[str, list[MemberRow]] = field(default_factory=lambda: defaultdict(list))
    by_name_key: dict[str, list[MemberRow]] = field(default_factory=lambda: defaultdict(list))
    candidates: dict[int, Candidate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in self.rows.values():
            self.by_email[row.email] = row
            if row.phone:
                self.by_phone[row.phone].append(row)
            if row.name_key:
                self.by_name_key[row.name_key].append(row)

    def candidate(self, row: MemberRow) -> Candidate:
        if row.id not in self.candidates:
            self.candidates[row.id] = _candidate(row)
        return self.candidates[row.id]

    def note(self, kind: str, entry: dict[str, Any]) -> None:
        if len(self.details[kind]) < MAX_DETAIL_ENTRIES:
            self.details[kind].append(entry)


async def apply_records(
    session: AsyncSession,
    tracker: Tracker,
    tenant_id: int,
    source: str,
    records: Sequence[MappedRecord],
    now: datetime,
    *,
    options: IdentityOptions | None = None,
    actor: str = "system",
    operation: str = "apply",
) -> ApplyResult:
    """Apply a page of a source's records to the tenant's members in a bounded number of queries.

    Each record is normalised, matched (tracker link, email, phone, fuzzy name with a second signal) and
    merged field by field under the tenant's policies; undecided fields become conflicts, every change an
    audit entry, and each record's external id a tracker link. The caller's unit of work commits.
    """
    if len(records) > MAX_RECORDS_PER_CALL:
        raise InvalidInput(f"records: at most {MAX_RECORDS_PER_CALL} per call, got {len(records)}")
    tracker.registry.check_source(source)
    if options is None:
        options = options_from(await repository.identity_settings(session, tenant_id))
    normalised = [normalize_record(record, source, now, options.normalise) for record in records]
    page = await _load(session, tracker, tenant_id, source, normalised, options)
    for index, record in enumerate(normalised):
        _apply_one(page, index, record)
    recorded = await repository.record_operation(session, tenant_id, source, operation, now)
    await _write(session, tracker, page, normalised, now, actor, operation, recorded.id)
    result = _result(page, recorded.id, normalised)
    recorded.details = {"counts": _counts(result), **page.details}
    return result


async def _load(
    session: AsyncSession,
    tracker: Tracker,
    tenant_id: int,
    source: str,
    records: list[NormalisedRecord],
    options: IdentityOptions,
) -> _Page:
    external_ids = [record.external_id for record in records if record.external_id]
    found = await tracker.find_many_by_external_id(session, tenant_id, external_ids, source, "member")
    linked = {external_id: int(ref.entity_id) for external_id, ref in found.items()}
    # A linked record is that member: only unlinked ones need phone and name candidates.
    unlinked = [record for record in records if (record.external_id or "") not in linked]
    rows = await repository.candidates(
        session,
        tenant_id,
        ids=sorted(set(linked.values())),
        emails=sorted({record.value("email") for record in records if record.value("email")}),
        phones=sorted({record.value("phone") for record in unlinked if record.value("phone")}),
        name_keys=sorted({key for record in unlinked for key in _name_keys_of(record.value)}),
    )
    return _Page(tenant_id, source, options, {row.id: row for row in rows}, linked)


def _name_keys_of(value: Any) -> frozenset[str]:
    return _name_keys(value("given_name"), value("family_name"), value("full_name"))


@functools.lru_cache(maxsize=100_000)
def _name_keys(given: str | None, family: str | None, full: str | None) -> frozenset[str]:
    return frozenset(key for key in blocking_keys(given, family, full, None, None) if key.startswith("n:"))


def name_key(values: dict[str, Any]) -> str | None:
    """The one name key stored on a member: either spelling order of a name finds it (see `_name_keys_of`)."""
    keys = _name_keys_of(values.get)
    return min(keys)[:64] if keys else None


def _candidate(row: MemberRow) -> Candidate:
    postal = (row.address or {}).get("postal_code")
    return Candidate(row.id, row.email, row.phone, row.given_name, row.family_name, row.name, postal)


def _match(page: _Page, record: NormalisedRecord) -> MatchDecision:
    """Decide with the fewest candidates that can matter: a link or an email match ends the search."""
    thresholds = page.options.thresholds
    linked = page.linked.get(record.external_id or "")
    email_row = page.by_email.get(record.value("email") or "")
    if linked is not None or email_row is not None:
        by_email = page.candidate(email_row) if email_row is not None else None
        return decide(record, linked=linked, by_email=by_email, by_phone=[], by_name=[], thresholds=thresholds)
    by_phone = [page.candidate(row) for row in page.by_phone.get(record.value("phone") or "", [])]
    named: dict[int, MemberRow] = {}
    for key in sorted(_name_keys_of(record.value)):
        named.update((row.id, row) for row in page.by_name_key.get(key, []))
    by_name = [page.candidate(row) for _, row in sorted(named.items())[:MAX_NAME_CANDIDATES]]
    return decide(record, linked=None, by_email=None, by_phone=by_phone, by_name=by_name, thresholds=thresholds)


def _apply_one(page: _Page, index: int, record: NormalisedRecord) -> None:
    for rejection in record.rejected:
        page.note("rejected_fields", {"record": index, "external_id": record.external_id, **vars(rejection)})
    target, decision = _page_local(page, record), None
    if target is None:
        decision = _match(page, record)
        page.note("decisions", _decision_entry(index, record, decision))
        if decision.kind in MATCHED and decision.member_id in page.rows:
            target = _existing(page, decision.member_id)
    if target is not None:
        _merge(page, index, target, record)
    else:
        target = _create(page, index, record)
        if target is not None and decision is not None and decision.kind is MatchKind.REVIEW:
            assert decision.member_id is not None
            page.duplicates.append((target, decision.member_id, decision))
    page.record_targets.append(target)


def _page_local(page: _Page, record: NormalisedRecord) -> _Target | None:
    """A member this page is creating that the record is, by external id or email."""
    if record.external_id and record.external_id in page.new_by_external_id:
        return page.new_by_external_id[record.external_id]
    email = record.value("email")
    return page.new_by_email.get(email) if email else None


def _existing(page: _Page, member_id: int) -> _Target:
    if member_id not in page.targets:
        page.targets[member_id] = _Target(state_of(page.rows[member_id]), created=False)
    return page.targets[member_id]


def _create(page: _Page, index: int, record: NormalisedRecord) -> _Target | None:
    email = record.value("email")
    if email is None:
        page.outcomes.append("rejected")
        page.note("rejected_records", {"record": index, "external_id": record.external_id, "reason": _no_email()})
        return None
    state, result = new_member(record)
    target = _Target(state, created=True)
    target.changes = [(change.field, None, change.after, change.source) for change in result.changes]
    page.targets[id(state)] = target
    page.new_by_email[email] = target
    if record.external_id:
        page.new_by_external_id[record.external_id] = target
    page.outcomes.append("created")
    return target


def _no_email() -> str:
    return "no valid email: a new member needs one"


def _merge(page: _Page, index: int, target: _Target, record: NormalisedRecord) -> None:
    record = _guard_email(page, target, record)
    result: MergeResult = merge_record(target.state, record, page.options.policies)
    target.changes += [(change.field, change.before, change.after, change.source) for change in result.changes]
    target.conflicts += result.conflicts
    for kept in result.kept:
        page.note("kept", {"record": index, "field": kept.field, "reason": kept.reason})
    page.outcomes.append("conflicted" if result.conflicts else "updated" if result.changes else "unchanged")


def _guard_email(page: _Page, target: _Target, record: NormalisedRecord) -> NormalisedRecord:
    """Refuse to move a member onto an email another member holds: that question goes to a person."""
    email = record.value("email")
    if email is None or email == target.state.values.get("email"):
        return record
    holder_row = page.by_email.get(email)
    holder = None if holder_row is None or holder_row.id == target.state.member_id else holder_row.id
    owner = page.new_by_email.get(email)
    if holder is None and (owner is None or owner is target):
        return record
    incoming = record.values["email"]
    held_by = f"member {holder}" if holder is not None else "a member created in this page"
    reason = f"email {email} belongs to {held_by}"
    target.conflicts.append(OpenConflict("email", target.state.values.get("email"), incoming, reason))
    values = {name: value for name, value in record.values.items() if name != "email"}
    return NormalisedRecord(record.source, record.external_id, record.changed_at, values, record.rejected)


def _decision_entry(index: int, record: NormalisedRecord, decision: MatchDecision) -> dict[str, Any]:
    return {
        "record": index,
        "external_id": record.external_id,
        "kind": decision.kind.value,
        "member_id": decision.member_id,
        "score": round(decision.score, 4),
        "reasons": list(decision.reasons),
    }


async def _write(
    session: AsyncSession,
    tracker: Tracker,
    page: _Page,
    records: list[NormalisedRecord],
    now: datetime,
    actor: str,
    operation: str,
    operation_id: int,
) -> None:
    created = [target for target in page.targets.values() if target.created]
    ids = await repository.insert_members(session, page.tenant_id, [_member_row(page, t, now) for t in created])
    for target in created:
        target.state.member_id = ids[target.state.values["email"]]
    changed = [target for target in page.targets.values() if not target.created and target.state.changed]
    await repository.update_members(
        session, [_member_row(page, target, now) | {"id": target.state.member_id} for target in changed]
    )
    audit = [
        _audit_row(page, target, change, now, actor, operation, operation_id)
        for target in page.targets.values()
        for change in target.changes
    ]
    await repository.insert_audit(session, audit)
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
    await _link(session, tracker, page, records, now)


def _member_row(page: _Page, target: _Target, now: datetime) -> dict[str, Any]:
    columns = column_values(target.state)
    columns["name_key"] = name_key(target.state.values)
    row = columns | {"updated_at": now}
    if target.created:
        row |= {"tenant_id": page.tenant_id, "created_at": now}
    return row


def _audit_row(
    page: _Page,
    target: _Target,
    change: tuple[str, Any, Any, str],
    now: datetime,
    actor: str,
    operation: str,
    operation_id: int,
) -> dict[str, Any]:
    name, before, after, source = change
    return {
        "tenant_id": page.tenant_id,
        "member_id": target.state.member_id,
        "field": name,
        "before": before,
        "after": after,
        "source": source,
        "operation": operation,
        "operation_id": operation_id,
        "actor": actor,
        "at": now,
    }


def _conflict_row(page: _Page, target: _Target, conflict: OpenConflict, now: datetime) -> dict[str, Any]:
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


def _pair_row(page: _Page, target: _Target, other: int, decision: MatchDecision, now: datetime) -> dict[str, Any]:
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


async def _link(
    session: AsyncSession, tracker: Tracker, page: _Page, records: list[NormalisedRecord], now: datetime
) -> None:
    links = [
        SyncedLink(_ref(page, target), record.external_id, None, record.changed_at)
        for record, target in zip(records, page.record_targets, strict=True)
        if target is not None and record.external_id
    ]
    if links:
        await tracker.mark_synced_many(session, page.source, links, now)


def _ref(page: _Page, target: _Target) -> EntityRef:
    return EntityRef("member", str(target.state.member_id), page.tenant_id)


def _counts(result: ApplyResult) -> dict[str, int]:
    names = ("created", "updated", "unchanged", "conflicted", "rejected", "possible_duplicates", "rejected_fields")
    return {name: getattr(result, name) for name in names}


def _result(page: _Page, operation_id: int, records: list[NormalisedRecord]) -> ApplyResult:
    counts = {kind: page.outcomes.count(kind) for kind in ("created", "updated", "unchanged", "conflicted", "rejected")}
    return ApplyResult(
        operation_id=operation_id,
        possible_duplicates=len(page.duplicates),
        rejected_fields=sum(len(record.rejected) for record in records),
        member_ids=tuple(None if target is None else target.state.member_id for target in page.record_targets),
        **counts,
    )
