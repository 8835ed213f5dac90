"""Pure checks of what callers hand the tracker."""

from __future__ import annotations

import json
import re
from typing import Any

from membersync.errors import Conflict, InvalidInput
from membersync.tracker.entities import EntityRef


class ExternalIdTaken(Conflict):
    """This external id is already linked to another entity in this source."""

    @classmethod
    def naming(cls, external_id: str, source: str, holder: EntityRef, claimant: EntityRef) -> ExternalIdTaken:
        return cls(
            f"external id {external_id!r} in {source} is linked to {holder.entity_type} {holder.entity_id}; "
            f"{claimant.entity_type} {claimant.entity_id} cannot claim it"
        )


MAX_EXTERNAL_ID_LENGTH = 255
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
MAX_METADATA_BYTES = 64 * 1024


def check_external_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("external_id: must be a non-empty string")
    if len(value) > MAX_EXTERNAL_ID_LENGTH:
        raise InvalidInput(f"external_id: must be at most {MAX_EXTERNAL_ID_LENGTH} characters")
    if CONTROL_CHARACTER.search(value):
        raise InvalidInput("external_id: must not contain control characters")
    return value


def check_metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidInput("metadata: must be a JSON object with string keys")
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"metadata: not JSON-serialisable ({error})") from None
    if "\\u0000" in encoded:
        raise InvalidInput("metadata: must not contain NUL characters")
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata: must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value
