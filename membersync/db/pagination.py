"""Keyset pagination cursors: the last id of the previous page, as a decimal string."""

from __future__ import annotations

from membersync.errors import InvalidInput

MAX_ID = 2**63 - 1


def decode_cursor(cursor: str | None) -> int:
    """The id after which the next page starts; `InvalidInput` for anything this API did not hand out."""
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19 or int(cursor) > MAX_ID:
        raise InvalidInput("cursor: not a cursor returned by this API")
    return int(cursor)
