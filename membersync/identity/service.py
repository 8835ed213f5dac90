"""`apply_records`: the one path a page of incoming member records takes — normalise, match, merge, audit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import planned_for_values
from membersync.db.overlap import in_flight
from membersync.errors import InvalidInput
from membersync.heap import pauses_collector
from membersync.identity import repository
from membersync.identity.fingerprint import fingerprint_of, options_digest
from membersync.identity.matching import MatchDecision, MatchKind, decide, record_profile
from membersync.identity.merge import MergeResult, OpenConflict, merge_record, new_member
from membersync.identity.normalize import normalize_external_id, normalize_record
from membersync.identity.page import Page, Target, candidate_of, name_keys_of
from membersync.identity.schemas import MappedRecord, NormalisedRecord
from membersync.identity.settings import IdentityOptions, options_from
from membersync.identity.state import state_of
from membersync.identity.writes import write_page
from membersync.tracker.entities import LinkedRecord
from membersync.tracker.service import Tracker

MAX_RECORDS_PER_CALL = 5000
# A name block bigger than this (a very common name) is cut, oldest members first: matching on a name alone
# needs a second signal anyway, and phone and email candidates are never cut. A record meets the blocks of its
# two name keys (both word orders of its name).
MAX_NAME_CANDIDATES = 200
NO_EMAIL = "no valid email: a new member needs one"
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


@pauses_collector
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
        options = await tenant_options(session, tenant_id)
    external_ids = [normalize_external_id(record.external_id) for record in records]
    digest = options_digest(options)
    async with planned_for_values(session):
        found = await tracker.find_many_linked(session, tenant_id, filter(None, external_ids), source, "member")
        # Only a linked record can have been sent before: the others' fingerprints are made while the page loads.
        fingerprints = _fingerprints(records, external_ids, digest, lambda external_id: external_id in found)
        resent = _resent(external_ids, fingerprints, found)
        todo = [index for index in range(len(records)) if index not in resent]
        normalised = {index: normalize_record(records[index], source, now, options.normalise) for index in todo}
        linked = {external_id: int(link.entity.entity_id) for external_id, link in found.items()}
        async with in_flight(session, _load(session, tenant_id, source, normalised, linked, options)) as loading:
            unlinked = _fingerprints(records, external_ids, digest, lambda external_id: external_id not in found)
            profiles = {i: record_profile(r) for i, r in normalised.items() if (r.external_id or "") not in linked}
            page = await loading
        page.record_profiles = profiles
        decisions = await _decide_all(session, page, normalised)
    fingerprints = [mine or theirs for mine, theirs in zip(fingerprints, unlinked, strict=True)]
    # At most the unmatched records create a member: their ids are drawn while the records are merged.
    creating = sum(decision.kind not in MATCHED for decision in decisions.values())
    async with in_flight(session, repository.reserve_member_ids(session, creating)) as reserving:
        for index, record in normalised.items():
            _apply_one(page, index, record, decisions[index])
        page.reserved_ids = await reserving
    counts = _counts(page, resent)
    applied = [(record, fingerprints[index]) for index, record in normalised.items()]
    details = {"counts": counts, **page.details}
    operation_id = await write_page(session, tracker, page, applied, now, actor, operation, details)
    return _result(page, operation_id, list(normalised), resent, counts)


def _fingerprints(
    records: Sequence[MappedRecord], external_ids: list[str | None], digest: str, wanted: Callable[[str], bool]
) -> list[str | None]:
    """The fingerprints of the records whose external id is `wanted`, None for the rest."""
    return [
        fingerprint_of(record, digest) if external_id and wanted(external_id) else None
        for record, external_id in zip(records, external_ids, strict=True)
    ]


def _resent(
    external_ids: list[str | None], fingerprints: list[str | None], found: dict[str, LinkedRecord]
) -> dict[int, int]:
    """Records whose link holds their fingerprint: the source sent them again as they were last applied, so
    they are unchanged without being looked at again. Index -> member id."""
    resent: dict[int, int] = {}
    for index, (external_id, fingerprint) in enumerate(zip(external_ids, fingerprints, strict=True)):
        link = found.get(external_id or "")
        if fingerprint is not None and link is not None and link.fingerprint == fingerprint:
            resent[index] = int(link.entity.entity_id)
    return resent


async def tenant_options(session: AsyncSession, tenant_id: int) -> IdentityOptions:
    """The tenant's stored identity settings, or the defaults."""
    return options_from(await repository.identity_settings(session, tenant_id))


async def _load(
    session: AsyncSession,
    tenant_id: int,
    source: str,
    records: dict[int, NormalisedRecord],
    linked: dict[str, int],
    options: IdentityOptions,
) -> Page:
    """The members the records are linked to or share an email with, whole, and the columns matching reads of
    those sharing a phone or a name key with a record that is not linked."""
    # A linked record is that member: only unlinked ones need phone and name candidates.
    unlinked = {} if options.email_only else {i: r for i, r in records.items() if (r.external_id or "") not in linked}
    name_keys = {index: name_keys_of(record.value) for index, record in unlinked.items()}
    # First, as the longest query: on PostgreSQL `apply_records` sends it ahead of its own work (`in_flight`).
    match_rows = await repository.match_candidates(
        session,
        tenant_id,
        phones=sorted({record.value("phone") for record in unlinked.values() if record.value("phone")}),
        name_keys=sorted(set().union(*name_keys.values())),
        per_name_key=MAX_NAME_CANDIDATES,
    )
    rows = await repository.targets(
        session,
        tenant_id,
        ids=sorted({linked[r.external_id] for r in records.values() if r.external_id in linked}),
        emails=sorted({record.value("email") for record in records.values() if record.value("email")}),
    )
    page = Page(tenant_id, source, options, {row.id: row for row in rows}, linked, match_rows)
    page.record_name_keys = name_keys
    return page


async def _decide_all(
    session: AsyncSession, page: Page, records: dict[int, NormalisedRecord]
) -> dict[int, MatchDecision]:
    """Every record's match against the stored members, and the whole rows of members matched by phone or name
    (only their matching columns were loaded)."""
    decisions = {index: _match(page, index, record) for index, record in records.items()}
    missing = {d.member_id for d in decisions.values() if d.kind in MATCHED and d.member_id not in page.rows}
    for row in await repository.members_by_id(session, sorted(filter(None, missing))):
        page.rows[row.id] = row
    return decisions


def _match(page: Page, index: int, record: NormalisedRecord) -> MatchDecision:
    """Decide with the fewest candidates that can matter: a link or an email match ends the search."""
    thresholds = page.options.thresholds
    linked = page.linked.get(record.external_id or "")
    email_row = page.by_email.get(record.value("email") or "")
    profile = page.record_profiles.get(index)
    if linked is not None or email_row is not None or page.options.email_only:
        by_email = candidate_of(email_row) if email_row is not None else None
        return decide(
            record, linked=linked, by_email=by_email, by_phone=[], by_name=[], thresholds=thresholds, profile=profile
        )
    by_phone = page.by_phone.get(record.value("phone") or "", [])
    pools = [page.name_block(key) for key in sorted(page.record_name_keys[index])]
    return decide(
        record, linked=None, by_email=None, by_phone=by_phone, name_pools=pools, thresholds=thresholds, profile=profile
    )


def _apply_one(page: Page, index: int, record: NormalisedRecord, decision: MatchDecision) -> None:
    page.rejected_fields += len(record.rejected)
    for rejection in record.rejected:
        page.note("rejected_fields", {"record": index, "external_id": record.external_id, **vars(rejection)})
    target = _page_local(page, record)
    if target is None:
        page.note("decisions", _decision_entry(index, record, decision))
        if decision.kind in MATCHED and decision.member_id in page.rows:
            target = _existing(page, decision.member_id)
    if target is not None:
        _merge(page, index, target, record)
    else:
        target = _create(page, index, record)
        if target is not None and decision.kind is MatchKind.REVIEW:
            assert decision.member_id is not None
            page.duplicates.append((target, decision.member_id, decision))
    page.record_targets.append(target)


def _page_local(page: Page, record: NormalisedRecord) -> Target | None:
    """A member this page is creating that the record is, by external id or email."""
    if record.external_id and record.external_id in page.new_by_external_id:
        return page.new_by_external_id[record.external_id]
    email = record.value("email")
    return page.new_by_email.get(email) if email else None


def _existing(page: Page, member_id: int) -> Target:
    if member_id not in page.targets:
        page.targets[member_id] = Target(state_of(page.rows[member_id]), created=False)
    return page.targets[member_id]


def _create(page: Page, index: int, record: NormalisedRecord) -> Target | None:
    email = record.value("email")
    if email is None:
        page.outcomes.append("rejected")
        page.note("rejected_records", {"record": index, "external_id": record.external_id, "reason": NO_EMAIL})
        return None
    state = new_member(record)
    target = Target(state, created=True)
    page.targets[id(state)] = target
    page.new_by_email[email] = target
    if record.external_id:
        page.new_by_external_id[record.external_id] = target
    page.outcomes.append("created")
    return target


def _merge(page: Page, index: int, target: Target, record: NormalisedRecord) -> None:
    record = _guard_email(page, target, record)
    result: MergeResult = merge_record(target.state, record, page.options.policies)
    target.changes += result.changes
    target.conflicts += result.conflicts
    for kept in result.kept:
        page.note("kept", {"record": index, "field": kept.field, "reason": kept.reason})
    page.outcomes.append("conflicted" if result.conflicts else "updated" if result.changes else "unchanged")


def _guard_email(page: Page, target: Target, record: NormalisedRecord) -> NormalisedRecord:
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


def _counts(page: Page, resent: dict[int, int]) -> dict[str, int]:
    """How many records of the page went which way, and what else the page found."""
    counts = {kind: page.outcomes.count(kind) for kind in ("created", "updated", "unchanged", "conflicted", "rejected")}
    counts["unchanged"] += len(resent)
    return counts | {"possible_duplicates": len(page.duplicates), "rejected_fields": page.rejected_fields}


def _result(
    page: Page, operation_id: int, applied: list[int], resent: dict[int, int], counts: dict[str, int]
) -> ApplyResult:
    """`member_ids` in the order the records were given."""
    member_ids: dict[int, int | None] = dict(resent)
    for index, target in zip(applied, page.record_targets, strict=True):
        member_ids[index] = None if target is None else target.state.member_id
    return ApplyResult(
        operation_id=operation_id, member_ids=tuple(member_ids[index] for index in range(len(member_ids))), **counts
    )
