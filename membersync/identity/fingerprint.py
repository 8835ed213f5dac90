"""A digest of a source record as mapped, to recognise the same record sent again. Pure."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from membersync.identity.schemas import MappedRecord
from membersync.identity.settings import IdentityOptions

# Bumped whenever normalising, matching or merging changes what a record does: every record is applied again.
FINGERPRINT_VERSION = 1


def options_digest(options: IdentityOptions) -> str:
    """What the tenant's settings contribute to a fingerprint: a changed policy makes every record new again."""
    return _digest(f"{FINGERPRINT_VERSION}:{options!r}")


def fingerprint_of(record: MappedRecord, options: str) -> str | None:
    """The record's digest under settings digested as `options`; None when the record cannot be serialised
    stably (it is then always applied)."""
    body: dict[str, Any] = {
        "values": record.values,
        "external_id": record.external_id,
        "changed_at": None if record.changed_at is None else record.changed_at.isoformat(),
        "field_changed_at": record.field_changed_at,
        "options": options,
    }
    try:
        return _digest(_ENCODER.encode(body))
    except (TypeError, ValueError, RecursionError):  # RecursionError: a value that contains itself
        return None


def _stable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
    # Anything else has no stable text form (a default repr names a memory address): never skipped.
    raise TypeError(f"no stable form for {type(value).__name__}")


# One encoder for every record: `json.dumps` with these options builds a new one per call. A value that contains
# itself is caught by its recursion alone, without a dict insert and delete per container.
_ENCODER = json.JSONEncoder(sort_keys=True, default=_stable, ensure_ascii=False, check_circular=False)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
