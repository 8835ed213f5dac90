"""Pure checks of what callers hand the tracker."""

from __future__ import annotations

import json
from typing import Any

from membersync.errors import InvalidInput

MAX_EXTERNAL_ID_LENGTH = 255
MAX_METADATA_BYTES = 64 * 1024


def check_external_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("external_id: must be a non-empty string")
    if len(value) > MAX_EXTERNAL_ID_LENGTH:
        raise InvalidInput(f"external_id: must be at most {MAX_EXTERNAL_ID_LENGTH} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
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
