"""A member as canonical fields and back: what merging reads and writes. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from membersync.identity.policy import Current
from membersync.identity.schemas import ATTRIBUTE_PREFIX, CONSENT_FIELDS

# Canonical field -> members column, for the fields that have a column of their own.
COLUMNS = {
    "email": "email",
    "full_name": "name",
    "given_name": "given_name",
    "family_name": "family_name",
    "phone": "phone",
    "time_zone": "time_zone",
    "membership_status": "status",
    "membership_tier": "tier",
    "address": "address",
}
CONSENT_PREFIX = "consent_"


@dataclass
class MemberState:
    """The canonical values of one member (new or existing) and their provenance, changed in memory."""

    member_id: int | None
    values: dict[str, Any]
    sources: dict[str, dict[str, Any]]
    changed: set[str] = field(default_factory=set)

    def current(self, name: str) -> Current:
        source = self.sources.get(name) or {}
        at = source.get("at")
        return Current(self.values.get(name), source.get("source"), datetime.fromisoformat(at) if at else None)

    def declined(self, name: str) -> Any:
        """The incoming value a reviewer declined for this field (kept-current), as {"source", "value"}."""
        return (self.sources.get(name) or {}).get("declined")

    def decline(self, name: str, source: str, value: Any) -> None:
        self.sources[name] = dict(self.sources.get(name) or {}) | {"declined": {"source": source, "value": value}}

    def set(self, name: str, value: Any, source: str, changed_at: datetime) -> None:
        self.values[name] = value
        self.sources[name] = {"source": source, "at": changed_at.isoformat()}
        self.changed.add(name)

    def touch(self, source: str, name: str, changed_at: datetime) -> None:
        self.sources[name] = {"source": source, "at": changed_at.isoformat()}
        self.changed.add("field_sources")


def state_of(row: Any) -> MemberState:
    """The state of a loaded member row (anything with the members columns as attributes)."""
    values: dict[str, Any] = {name: getattr(row, column) for name, column in COLUMNS.items()}
    for name in CONSENT_FIELDS:
        values[name] = (row.consent or {}).get(name.removeprefix(CONSENT_PREFIX))
    for key, value in (row.attributes or {}).items():
        values[ATTRIBUTE_PREFIX + key] = value
    values = {name: value for name, value in values.items() if value is not None}
    return MemberState(row.id, values, dict(row.field_sources or {}))


def column_values(state: MemberState) -> dict[str, Any]:
    """Every members column the canonical values fill, for an insert or a full update."""
    columns: dict[str, Any] = {column: state.values.get(name) for name, column in COLUMNS.items()}
    columns["status"] = columns["status"] or "active"
    columns["consent"] = {
        name.removeprefix(CONSENT_PREFIX): state.values[name] for name in CONSENT_FIELDS if name in state.values
    }
    columns["attributes"] = {
        name.removeprefix(ATTRIBUTE_PREFIX): value
        for name, value in state.values.items()
        if name.startswith(ATTRIBUTE_PREFIX)
    }
    columns["field_sources"] = state.sources
    return columns
