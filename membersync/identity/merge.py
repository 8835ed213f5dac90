"""Applying one normalised record to one member's state, field by field under the merge policies. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from membersync.identity.policy import FieldDecision, MergePolicies, Outcome, decide_field
from membersync.identity.schemas import FieldValue, NormalisedRecord
from membersync.identity.state import MemberState


@dataclass(slots=True)
class Change:
    """One field that changed value: what the audit trail records. Never changed once made (not frozen: a page
    makes ten per new member, and frozen ones take twice as long to build)."""

    field: str
    before: Any
    after: Any
    source: str


@dataclass(frozen=True)
class OpenConflict:
    """A field the policy left to a person: the member's value and the incoming one."""

    field: str
    current: Any
    incoming: FieldValue
    reason: str


@dataclass
class MergeResult:
    changes: list[Change] = field(default_factory=list)
    conflicts: list[OpenConflict] = field(default_factory=list)
    kept: list[FieldDecision] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def merge_record(state: MemberState, record: NormalisedRecord, policies: MergePolicies) -> MergeResult:
    """Decide every incoming field against the member's current value and apply what the policies allow."""
    result = MergeResult()
    for name in sorted(record.values):
        incoming = record.values[name]
        if state.declined(name) == {"source": incoming.source, "value": incoming.value}:
            result.kept.append(FieldDecision(name, Outcome.KEEP, incoming, "declined in review"))
            continue
        current = state.current(name)
        decision = decide_field(name, current, incoming, policies.for_field(name))
        if decision.outcome is Outcome.APPLY:
            result.changes.append(Change(name, current.value, incoming.value, incoming.source))
            state.set(name, incoming.value, incoming.source, incoming.changed_at)
        elif decision.outcome is Outcome.TOUCH:
            state.touch(incoming.source, name, incoming.changed_at)
            result.unchanged.append(name)
        elif decision.outcome is Outcome.UNCHANGED:
            result.unchanged.append(name)
        elif decision.outcome is Outcome.CONFLICT:
            result.conflicts.append(OpenConflict(name, current.value, incoming, decision.reason))
        elif decision.outcome is Outcome.KEEP:
            result.kept.append(decision)
    return result


def new_member(record: NormalisedRecord) -> MemberState:
    """The state of a member created from `record`, every value applied (each one a change)."""
    values: dict[str, Any] = {}
    sources: dict[str, dict[str, Any]] = {}
    # A record's fields mostly share one source and change time: they share one provenance entry too, which a
    # state only ever replaces, never changes in place.
    stamps: dict[tuple[str, datetime], dict[str, Any]] = {}
    for name in sorted(record.values):
        incoming = record.values[name]
        key = (incoming.source, incoming.changed_at)
        stamp = stamps.get(key)
        if stamp is None:
            stamp = stamps[key] = {"source": incoming.source, "at": incoming.changed_at.isoformat()}
        values[name] = incoming.value
        sources[name] = stamp
    return MemberState(None, values, sources, set(values))
