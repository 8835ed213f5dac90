"""The canonical member record every source of change is turned into before it touches a member."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Canonical fields with one scalar value each. `address` holds a whole address (a dict of ADDRESS_PARTS);
# consent flags are one field per channel; free-form attributes are fields named "attributes.<key>".
SCALAR_FIELDS = (
    "email",
    "given_name",
    "family_name",
    "full_name",
    "phone",
    "time_zone",
    "membership_status",
    "membership_tier",
)
ADDRESS_FIELD = "address"
ADDRESS_PARTS = ("line1", "line2", "city", "region", "postal_code", "country")
CONSENT_CHANNELS = ("email", "sms", "post")
CONSENT_FIELDS = tuple(f"consent_{channel}" for channel in CONSENT_CHANNELS)
ATTRIBUTE_PREFIX = "attributes."
CANONICAL_FIELDS = (*SCALAR_FIELDS, ADDRESS_FIELD, *CONSENT_FIELDS)


_CANONICAL = frozenset(CANONICAL_FIELDS)


def is_canonical_field(name: str) -> bool:
    return name in _CANONICAL or (name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX))


@dataclass(slots=True)
class FieldValue:
    """One normalised value, with the source it came from and the time that source says it changed.

    Not frozen, but never changed once made: a page makes ten of these per record, and frozen ones take twice
    as long to build."""

    value: Any
    source: str
    changed_at: datetime


@dataclass(frozen=True)
class Rejection:
    """A field refused during normalisation, with why; the rest of its record goes on."""

    field: str
    reason: str
    value_preview: str


@dataclass(frozen=True)
class MappedRecord:
    """A source record after field mapping, before normalisation: canonical field -> raw value."""

    values: dict[str, Any]
    external_id: str | None = None
    changed_at: datetime | None = None
    field_changed_at: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class NormalisedRecord:
    """A source record in canonical form: valid values by canonical field, and what was rejected."""

    source: str
    external_id: str | None
    changed_at: datetime
    values: dict[str, FieldValue]
    rejected: tuple[Rejection, ...] = ()

    def value(self, name: str) -> Any:
        found = self.values.get(name)
        return None if found is None else found.value
