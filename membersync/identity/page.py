"""One page of records in flight: the members it may touch, what it did to them, and what it noted."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from membersync.identity.matching import Candidate, CandidatePool, MatchDecision, Profile, blocking_keys
from membersync.identity.merge import Change, OpenConflict
from membersync.identity.settings import IdentityOptions
from membersync.identity.state import MemberState

MAX_DETAIL_ENTRIES = 5000
MemberRow = Any  # a whole members row as loaded by `repository.targets`: columns as attributes
# A member as matching reads it, loaded by `repository.match_candidates`: the `Candidate` fields, then the name key.
CandidateRow = Any


@dataclass
class Target:
    """One member a page writes to (existing or about to be created), with what the page did to it."""

    state: MemberState
    created: bool
    changes: list[Change] = field(default_factory=list)  # of an existing member: every value of a created one is new
    conflicts: list[OpenConflict] = field(default_factory=list)


@dataclass
class Page:
    tenant_id: int
    source: str
    options: IdentityOptions
    rows: dict[int, MemberRow]
    linked: dict[str, int]
    match_rows: list[CandidateRow]
    targets: dict[int, Target] = field(default_factory=dict)  # by id() of the state: new ones have no id yet
    new_by_email: dict[str, Target] = field(default_factory=dict)
    new_by_external_id: dict[str, Target] = field(default_factory=dict)
    record_targets: list[Target | None] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    rejected_fields: int = 0
    duplicates: list[tuple[Target, int, MatchDecision]] = field(default_factory=list)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    by_email: dict[str, MemberRow] = field(default_factory=dict)
    by_phone: dict[str, list[Candidate]] = field(default_factory=lambda: defaultdict(list))
    by_name_key: dict[str, list[Candidate]] = field(default_factory=lambda: defaultdict(list))
    name_blocks: dict[str, CandidatePool] = field(default_factory=dict)
    record_name_keys: dict[int, frozenset[str]] = field(default_factory=dict)  # of each unlinked record, by index
    record_profiles: dict[int, Profile] = field(default_factory=dict)  # of each unlinked record, by index
    reserved_ids: list[int] = field(default_factory=list)  # for the members the page creates

    def __post_init__(self) -> None:
        for row in self.rows.values():
            self.by_email[row.email] = row
        # Unpacked by position: a page reads thousands of candidate rows, and named access to a row costs more.
        for *columns, key in self.match_rows:
            candidate = Candidate(*columns)
            if candidate.phone:
                self.by_phone[candidate.phone].append(candidate)
            if key:
                self.by_name_key[key].append(candidate)

    def name_block(self, key: str) -> CandidatePool:
        """The candidates sharing a name key, pooled once for every record of the page in that block."""
        if key not in self.name_blocks:
            self.name_blocks[key] = CandidatePool(self.by_name_key.get(key, []))
        return self.name_blocks[key]

    def note(self, kind: str, entry: dict[str, Any]) -> None:
        if len(self.details[kind]) < MAX_DETAIL_ENTRIES:
            self.details[kind].append(entry)


def name_keys_of(value: Any) -> frozenset[str]:
    return _name_keys(value("given_name"), value("family_name"), value("full_name"))


@functools.lru_cache(maxsize=100_000)
def _name_keys(given: str | None, family: str | None, full: str | None) -> frozenset[str]:
    return frozenset(key for key in blocking_keys(given, family, full, None, None) if key.startswith("n:"))


def name_key(values: dict[str, Any]) -> str | None:
    """The one name key stored on a member: either spelling order of a name finds it (see `name_keys_of`)."""
    keys = name_keys_of(values.get)
    return min(keys)[:64] if keys else None


def candidate_of(row: MemberRow) -> Candidate:
    postal = (row.address or {}).get("postal_code")
    return Candidate(row.id, row.email, row.phone, row.given_name, row.family_name, row.name, postal)
