"""Checks on a push to the emulated destination: authorization, body size, idempotency key and payload.

Each check raises `Refused`, naming the field at fault the way the emulator's error answers do.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 255
MAX_TIME_ZONE_LENGTH = 255
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Field paths echo client-chosen keys; a bounded prefix keeps a hostile megabyte key out of the answer.
_ECHOED_KEY_LENGTH = 64
_SUBSCRIBER_KEYS = ("email", "name", "time_zone")
# Control characters and lone surrogates (which JSON's \uXXXX escapes can produce) are never member text.
_FORBIDDEN_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class Refused(Exception):
    """A request answered with an error naming the field at fault."""

    def __init__(self, field: str, problem: str, status_code: int = 422) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.status_code = status_code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self), "field": self.field}, status_code=self.status_code)


def echoable(key: str) -> str:
    """A client-chosen key cut short and made printable, to name it in an error."""
    return key[:_ECHOED_KEY_LENGTH].encode("utf-8", "backslashreplace").decode("utf-8")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_json(body: bytes) -> object:
    """The JSON value of `body`; raises Refused when it is not JSON."""
    try:
        return json.loads(body)
    # ValueError covers bad JSON, bad UTF-8 and over-long integers; RecursionError deep nesting.
    except (ValueError, RecursionError) as exc:
        raise Refused("body", "must be valid JSON") from exc


def _object(value: object, path: str, keys: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(value, dict):
        raise Refused(path or "body", "must be a JSON object")
    for key in value:
        if key not in keys:
            raise Refused(_join(path, echoable(key)), "is not a known key")
    for key in keys:
        if key not in value:
            raise Refused(_join(path, key), "is required")
    return value


def _items(value: object, path: str, max_items: int | None = None) -> list[object]:
    if not isinstance(value, list):
        raise Refused(path, "must be a list")
    if not value:
        raise Refused(path, "must not be empty")
    if max_items is not None and len(value) > max_items:
        raise Refused(path, f"must hold at most {max_items} items")
    return value


def _text(value: object, path: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise Refused(path, "must be a string")
    if len(value) > max_length:
        raise Refused(path, f"must be at most {max_length} characters")
    if _FORBIDDEN_CHARACTER.search(value):
        raise Refused(path, "must not contain control characters or lone surrogates")
    return value


def _check_email(value: object, path: str) -> None:
    if not _EMAIL.fullmatch(_text(value, path, MAX_EMAIL_LENGTH)):
        raise Refused(path, "must be an address with one @ and no spaces")


@functools.lru_cache(maxsize=1024)
def _is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    # Hostile keys raise ValueError, ZoneInfoNotFoundError (a KeyError) or OSError; any failure means unknown.
    except Exception:
        return False
    return True


def _check_time_zone(value: object, path: str) -> None:
    if not _is_time_zone(_text(value, path, MAX_TIME_ZONE_LENGTH)):
        raise Refused(path, "is not a known time zone")


def _batch_size(batch: object, path: str, max_batch_size: int) -> int:
    subscribers = _items(_object(batch, path, ("subscribers",))["subscribers"], f"{path}.subscribers", max_batch_size)
    for index, subscriber in enumerate(subscribers):
        where = f"{path}.subscribers[{index}]"
        fields = _object(subscriber, where, _SUBSCRIBER_KEYS)
        _check_email(fields["email"], f"{where}.email")
        _text(fields["name"], f"{where}.name", MAX_NAME_LENGTH)
        _check_time_zone(fields["time_zone"], f"{where}.time_zone")
    return len(subscribers)


def batch_sizes(body: bytes, max_batch_size: int) -> list[int]:
    """The subscriber count of each batch of a valid push; raises Refused naming the first bad field."""
    batches = _items(_object(parse_json(body), "", ("batches",))["batches"], "batches")
    return [_batch_size(batch, f"batches[{index}]", max_batch_size) for index, batch in enumerate(batches)]


def check_authorization(header: str | None, api_key: str) -> None:
    """Raises a 401 Refused unless `header` is `Bearer <api_key>`."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Refused("authorization", "must be 'Bearer <api key>'", status_code=401)
    if not hmac.compare_digest(token.encode(), api_key.encode()):
        raise Refused("authorization", "does not carry the API key", status_code=401)


def idempotency_key(header: str | None) -> str | None:
    """The `Idempotency-Key` header, checked for length; None when absent."""
    if header is not None and not 1 <= len(header) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise Refused("idempotency_key", f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    return header


def _declares_more_than(content_length: str | None, limit: int) -> bool:
    if content_length is None or not (content_length.isascii() and content_length.isdigit()):
        return False
    digits = content_length.lstrip("0")
    # Comparing lengths first keeps int() away from digit strings long enough to make it raise.
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; raises a 413 Refused as soon as it is declared or read past `limit` bytes."""
    too_large = Refused("body", f"must be at most {limit} bytes", status_code=413)
    if _declares_more_than(request.headers.get("content-length"), limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)
