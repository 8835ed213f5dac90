"""Normalisation: a mapped source record's raw values turned into canonical, validated values.

Pure: no database, network or clock. Each `normalize_*` function returns the canonical form of one value or
raises `FieldRejected` with a reason a user can read; `normalize_record` never raises for a bad value and
reports it as a `Rejection` instead, so one bad field never costs the rest of its record.
"""

from __future__ import annotations

import functools
import json
import math
import re
import reprlib
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from membersync.identity.phones import is_valid_phone, parse_phone
from membersync.identity.schemas import (
    ADDRESS_PARTS,
    CONSENT_FIELDS,
    FieldValue,
    MappedRecord,
    NormalisedRecord,
    Rejection,
    is_canonical_field,
)

MAX_EMAIL_LENGTH = 320
MAX_PHONE_LENGTH = 64
MAX_EXTERNAL_ID_LENGTH = 255
MAX_ATTRIBUTE_DEPTH = 8
PREVIEW_LENGTH = 80
MAX_STATUS_LENGTH = 32  # the members.status column
CACHE_SIZE = 100_000
DOMAIN_CACHE_SIZE = 10_000
MAX_VALIDATED_EMAIL_LENGTH = 254  # email-validator's limit for a whole address (RFC 5321)

_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})
_CONTROL_CODES = (*range(0x20), *range(0x7F, 0xA0))
# In single-line text a newline or tab still separates words, so whitespace controls become spaces.
_DROP_CONTROLS: dict[int, None] = {code: None for code in _CONTROL_CODES if not chr(code).isspace()}
_ANY_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ATTRIBUTE_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Unpaired surrogates (json.loads accepts "\ud800") cannot be encoded as UTF-8, so no database could store them.
_SURROGATE = re.compile("[\ud800-\udfff]")
_COUNTRY = re.compile("[A-Za-z]{2}")
# RFC 5322 dot-atom text, lower-case ASCII: a local part email-validator accepts unchanged.
_ATOM = "[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_PLAIN_DOMAIN = re.compile("[a-z0-9.-]+")
_ANY_LOCAL = "a"
# "localtime" is whichever zone the host has; "Factory" means "not set". Neither names a place.
_NOT_ZONES = frozenset({"localtime", "Factory"})
# Unicode TS #39 "highly restrictive": one script, or Latin mixed with the scripts CJK text mixes with Han.
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN", "KATAKANA-HIRAGANA": "KATAKANA"}

# JSON scalars whose encoding decodes to an equal value of the same type: a copy of one is the value itself.
_JSON_SCALAR_TYPES = frozenset({str, int, float, bool})

_preview_repr = reprlib.Repr()
_preview_repr.maxlevel = 3
_preview_repr.maxstring = PREVIEW_LENGTH
_preview_repr.maxother = PREVIEW_LENGTH


@dataclass(frozen=True)
class NormaliseOptions:
    """Limits and defaults for normalisation."""

    default_region: str = "GB"
    max_text_length: int = 255
    max_attribute_bytes: int = 16 * 1024


DEFAULT_OPTIONS = NormaliseOptions()


class FieldRejected(ValueError):
    """A value that cannot be normalised; the message is the reason shown to users."""


def normalize_email(raw: object) -> str:
    """Validated (syntax only, never DNS) and lower-cased entirely: emails are matched case-insensitively.

    Rejects addresses whose local part, or any one label of the domain, mixes scripts ("paypal.com" spelt
    with a Cyrillic U+0430 for the first "a"); an address wholly in one non-Latin script is fine.
    """
    text = _require_text(raw).strip()
    if not text:
        raise FieldRejected("must not be empty")
    if len(text) > MAX_EMAIL_LENGTH:
        raise FieldRejected(f"longer than {MAX_EMAIL_LENGTH} characters")
    if _ANY_CONTROL.search(text):
        raise FieldRejected("must not contain control characters")
    email, problem = _checked_email(text.lower())
    if problem is not None:
        raise FieldRejected(problem)
    return email


# Pages of records repeat the same emails and phones (every unchanged record of every pull): validating them
# costs more than the rest of a record, and the answer depends on the text alone.
@functools.lru_cache(maxsize=CACHE_SIZE)
def _checked_email(text: str) -> tuple[str, str | None]:
    local, _, domain = text.partition("@")
    # Most addresses are a plain ASCII local part at a domain shared by thousands of others. email-validator takes
    # such a local part as it is, and checks the domain apart from it; it checks each domain once here, and every
    # other address whole (tests/identity/test_normalize.py holds both ways to the same answers).
    plain = (
        len(text) <= MAX_VALIDATED_EMAIL_LENGTH and _PLAIN_LOCAL.fullmatch(local) and _PLAIN_DOMAIN.fullmatch(domain)
    )
    if plain and _checked_domain(domain) == domain:
        return text, None
    return _checked_by_library(text)


@functools.lru_cache(maxsize=DOMAIN_CACHE_SIZE)
def _checked_domain(domain: str) -> str | None:
    """email-validator's form of a domain, or None if it refuses the domain."""
    try:
        return validate_email(f"{_ANY_LOCAL}@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def _checked_by_library(text: str) -> tuple[str, str | None]:
    try:
        email = validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        return "", f"not a valid email address: {error}"
    local, _, domain = email.rpartition("@")
    if not _is_single_script(local) or not all(_is_single_script(label) for label in domain.split(".")):
        return "", "mixes characters from different scripts (a look-alike address)"
    return email, None


def normalize_phone(raw: object, default_region: str) -> str:
    """E.164 ("+447911123456"); numbers without a country code are read as in `default_region`."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise FieldRejected("must be text or a number")
    if isinstance(raw, int) and not 0 <= raw < 10**MAX_PHONE_LENGTH:
        raise FieldRejected("not a phone number")
    text = str(raw)
    if len(text) > MAX_PHONE_LENGTH:
        raise FieldRejected(f"longer than {MAX_PHONE_LENGTH} characters")
    phone, problem = _checked_phone(text, default_region)
    if problem is not None:
        raise FieldRejected(problem)
    return phone


@functools.lru_cache(maxsize=CACHE_SIZE)
def _checked_phone(text: str, default_region: str) -> tuple[str, str | None]:
    try:
        number = parse_phone(text, default_region)
    except phonenumbers.NumberParseException:
        return "", "not a phone number"
    if not is_valid_phone(number):
        return "", "not a valid phone number"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def normalize_time_zone(raw: object) -> str:
    """An IANA time zone name in its canonical spelling, whatever the case of the input."""
    name = _time_zones().get(_require_text(raw).strip().lower())
    if name is None:
        raise FieldRejected("not an IANA time zone name like Europe/London")
    return name


def normalize_text(raw: object, max_length: int) -> str:
    """Single-line text: control characters dropped, whitespace runs collapsed to one space, ends stripped.

    Never truncates: text longer than `max_length` after cleaning is rejected.
    """
    text = _clean_text(raw)
    if not text:
        raise FieldRejected("must not be empty")
    if len(text) > max_length:
        raise FieldRejected(f"longer than {max_length} characters")
    return text


def normalize_status(raw: object, max_length: int) -> str:
    """Text as a status key: lower-case, spaces and hyphens as underscores ("Past-due" -> "past_due")."""
    status = normalize_text(raw, max_length).lower().replace(" ", "_").replace("-", "_")
    if len(status) > max_length:
        raise FieldRejected(f"longer than {max_length} characters")
    return status


def normalize_bool(raw: object) -> bool:
    """A bool from True/False, 1/0, or "true"/"false", "yes"/"no", "y"/"n", "1"/"0" in any case."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return raw == 1
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise FieldRejected("must be true or false")


def normalize_address(raw: object, options: NormaliseOptions) -> dict[str, str]:
    """A dict of ADDRESS_PARTS, each single-line text; country as an upper-case two-letter code.

    Parts that are None or blank are left out; an unknown part rejects the whole address, and so does an
    address with no parts left.
    """
    if not isinstance(raw, Mapping):
        raise FieldRejected(f"must be an address with parts {', '.join(ADDRESS_PARTS)}")
    unknown = [key for key in raw if key not in ADDRESS_PARTS]
    if unknown:
        raise FieldRejected(f"unknown address part {_preview(unknown[0])}")
    address: dict[str, str] = {}
    for part in ADDRESS_PARTS:
        value = raw.get(part)
        if value is None or (isinstance(value, str) and not _clean_text(value)):
            continue
        address[part] = _address_part(part, value, options.max_text_length)
    if not address:
        raise FieldRejected("must have at least one address part")
    return address


def normalize_attribute(raw: object, options: NormaliseOptions) -> Any:
    """A JSON value (a fresh copy): at most 8 levels of lists and objects, object keys text, no NaN or
    infinity, no control characters in text other than tab and newlines, at most `max_attribute_bytes` as JSON.
    """
    if isinstance(raw, str | int | float) and type(raw) in _JSON_SCALAR_TYPES:
        return _json_scalar(raw, options.max_attribute_bytes)
    _check_json_value(raw, options.max_attribute_bytes)
    try:
        encoded = json.dumps(raw, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise FieldRejected(f"larger than {options.max_attribute_bytes} bytes as JSON") from None
    if len(encoded.encode()) > options.max_attribute_bytes:
        raise FieldRejected(f"larger than {options.max_attribute_bytes} bytes as JSON")
    return json.loads(encoded)


def _json_scalar(raw: str | int | float | bool, max_bytes: int) -> str | int | float | bool:
    """A scalar attribute, checked and measured as `normalize_attribute` measures any value, without encoding it
    with a new JSON encoder (what `json.dumps` with options costs) and decoding it again."""
    if isinstance(raw, str) and len(raw) > max_bytes:  # each character is a byte or more
        raise FieldRejected(f"larger than {max_bytes} bytes as JSON")
    _check_json_scalar(raw)
    try:
        # JSON spells a number as Python prints it, and true and false take as many bytes as True and False.
        encoded = encode_basestring(raw) if isinstance(raw, str) else str(raw)
    except ValueError:  # an int with more digits than Python will print
        raise FieldRejected(f"larger than {max_bytes} bytes as JSON") from None
    if len(encoded.encode()) > max_bytes:
        raise FieldRejected(f"larger than {max_bytes} bytes as JSON")
    return raw


def split_full_name(full_name: str) -> tuple[str | None, str]:
    """(given name, family name): every word but the last, and the last word; one word is a family name only.

    A heuristic for sources that hold nothing but a full name. Right for "Ada King Lovelace" -> ("Ada King",
    "Lovelace"), wrong for family names of several words ("Ludwig van Beethoven" -> ("Ludwig van",
    "Beethoven")) and for family-name-first orders; map separate name fields where a source has them.
    """
    words = full_name.split()
    if not words:
        raise FieldRejected("must not be empty")
    return " ".join(words[:-1]) or None, words[-1]


def normalize_record(
    record: MappedRecord,
    source: str,
    received_at: datetime,
    options: NormaliseOptions = DEFAULT_OPTIONS,
) -> NormalisedRecord:
    """The record's values in canonical form, with every value that failed as a Rejection; never raises for
    a bad value.

    None means "the source has no value" and is skipped. A value's time is its `field_changed_at`, else the
    record's `changed_at`, else `received_at`; naive times are read as UTC and all are returned in UTC.
    Given and family names missing from the result are derived from a full name (`split_full_name`), and a
    missing full name from given and family names.
    """
    record_changed_at = _as_utc(record.changed_at or received_at)
    values: dict[str, FieldValue] = {}
    rejected: list[Rejection] = []
    for name, raw in record.values.items():
        outcome = _normalise_field(name, raw, record, source, record_changed_at, options)
        if isinstance(outcome, Rejection):
            rejected.append(outcome)
        elif outcome is not None:
            values[name] = outcome
    _derive_names(values, options)
    external_id, external_id_rejection = _external_id(record.external_id)
    if external_id_rejection is not None:
        rejected.append(external_id_rejection)
    return NormalisedRecord(source, external_id, record_changed_at, values, tuple(rejected))


def _normalise_field(
    name: object,
    raw: object,
    record: MappedRecord,
    source: str,
    record_changed_at: datetime,
    options: NormaliseOptions,
) -> FieldValue | Rejection | None:
    if not isinstance(name, str):
        return Rejection(_preview(name), "unknown field", _preview(raw))
    normaliser = _FIELD_NORMALISERS.get(name)
    if normaliser is None:
        if not is_canonical_field(name):
            return Rejection(name, "unknown field", _preview(raw))
        normaliser = normalize_attribute
    if raw is None:
        return None
    try:
        value = normaliser(raw, options)
    except FieldRejected as error:
        return Rejection(name, str(error), _preview(raw))
    changed_at = record.field_changed_at.get(name) if record.field_changed_at else None
    return FieldValue(value, source, record_changed_at if changed_at is None else _as_utc(changed_at))


def _text_field(raw: Any, options: NormaliseOptions) -> str:
    return normalize_text(raw, options.max_text_length)


def _email_field(raw: Any, _: NormaliseOptions) -> str:
    return normalize_email(raw)


def _phone_field(raw: Any, options: NormaliseOptions) -> str:
    return normalize_phone(raw, options.default_region)


def _time_zone_field(raw: Any, _: NormaliseOptions) -> str:
    return normalize_time_zone(raw)


def _status_field(raw: Any, _: NormaliseOptions) -> str:
    return normalize_status(raw, MAX_STATUS_LENGTH)


def _bool_field(raw: Any, _: NormaliseOptions) -> bool:
    return normalize_bool(raw)


# Every canonical field but the free-form attributes, which `normalize_attribute` takes.
_FIELD_NORMALISERS: dict[str, Callable[[Any, NormaliseOptions], Any]] = {
    "email": _email_field,
    "phone": _phone_field,
    "time_zone": _time_zone_field,
    "membership_status": _status_field,
    "given_name": _text_field,
    "family_name": _text_field,
    "full_name": _text_field,
    "membership_tier": _text_field,
    "address": normalize_address,
    **dict.fromkeys(CONSENT_FIELDS, _bool_field),
}


def _derive_names(values: dict[str, FieldValue], options: NormaliseOptions) -> None:
    full = values.get("full_name")
    if full is not None:
        given, family = split_full_name(full.value)
        for name, part in (("given_name", given), ("family_name", family)):
            if part is not None and name not in values:
                values[name] = FieldValue(part, full.source, full.changed_at)
        return
    given_value, family_value = values.get("given_name"), values.get("family_name")
    if given_value is None or family_value is None:
        return
    try:
        combined = normalize_text(f"{given_value.value} {family_value.value}", options.max_text_length)
    except FieldRejected:
        return  # each part fits but both together do not: no full name rather than a cut one
    changed_at = max(given_value.changed_at, family_value.changed_at)
    values["full_name"] = FieldValue(combined, given_value.source, changed_at)


def normalize_external_id(raw: object) -> str | None:
    """The external id `normalize_record` gives the record: None when it has none or it is refused."""
    return _external_id(raw)[0]


def _external_id(raw: object) -> tuple[str | None, Rejection | None]:
    if raw is None:
        return None, None
    try:
        return normalize_text(raw, MAX_EXTERNAL_ID_LENGTH), None
    except FieldRejected as error:
        return None, Rejection("external_id", str(error), _preview(raw))


def _as_utc(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _require_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise FieldRejected("must be text")
    if not raw.isascii() and _SURROGATE.search(raw):
        raise FieldRejected("must be valid Unicode text (has an unpaired surrogate)")
    return raw


def _clean_text(raw: object) -> str:
    text = _require_text(raw)
    # No control character is printable, so printable text (nearly all of it) has nothing to drop.
    if not text.isprintable():
        text = text.translate(_DROP_CONTROLS)
    return " ".join(text.split())


def _address_part(part: str, value: object, max_length: int) -> str:
    try:
        text = normalize_text(value, max_length)
    except FieldRejected as error:
        raise FieldRejected(f"{part}: {error}") from None
    if part != "country":
        return text
    if not _COUNTRY.fullmatch(text):
        raise FieldRejected("country: must be a two-letter country code like GB")
    return text.upper()


def _check_json_value(raw: object, max_bytes: int) -> None:
    # Iterative and bounded by depth and by a lower bound of the JSON size, so hostile input stays cheap.
    pending: list[tuple[object, int]] = [(raw, 0)]
    budget = max_bytes
    while pending:
        value, depth = pending.pop()
        budget -= 1 + (len(value) if isinstance(value, str) else 0)
        if budget < 0:
            raise FieldRejected(f"larger than {max_bytes} bytes as JSON")
        if isinstance(value, list | dict):
            if depth >= MAX_ATTRIBUTE_DEPTH:
                raise FieldRejected(f"nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
            pending.extend((item, depth + 1) for item in _json_children(value))
        else:
            _check_json_scalar(value)


def _json_children(container: list[Any] | dict[Any, Any]) -> list[Any]:
    if isinstance(container, list):
        return container
    if not all(isinstance(key, str) for key in container):
        raise FieldRejected("object keys must be text")
    return [*container.keys(), *container.values()]


def _check_json_scalar(value: object) -> None:
    if isinstance(value, str):
        if _ATTRIBUTE_CONTROL.search(value) or _SURROGATE.search(value):
            raise FieldRejected("text must not contain control characters other than tab and newlines")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FieldRejected("must not be NaN or infinite")
    elif value is not None and not isinstance(value, int):
        raise FieldRejected("must be a JSON value: text, number, true/false, null, list or object")


@functools.cache
def _time_zones() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones() - _NOT_ZONES}


def _is_single_script(text: str) -> bool:
    if text.isascii():
        return True
    scripts = {script for script in map(_script, text) if script is not None}
    return len(scripts) <= 1 or any(scripts <= allowed for allowed in _SCRIPT_MIXES)


def _script(char: str) -> str | None:
    # Digits, marks and punctuation are shared by scripts; only letters say which script a word is in.
    if not unicodedata.category(char).startswith("L"):
        return None
    words = unicodedata.name(char, "UNKNOWN").split()
    if words[0] in ("HALFWIDTH", "FULLWIDTH") and len(words) > 1:
        words = words[1:]
    return _SCRIPT_ALIASES.get(words[0], words[0])


def _preview(raw: object) -> str:
    try:
        text = _preview_repr.repr(raw)
    except Exception:  # a preview must never fail: huge ints refuse repr, custom __repr__ may raise
        text = f"<{type(raw).__name__}>"
    return text[:PREVIEW_LENGTH]
