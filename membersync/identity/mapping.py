"""Declarative field mapping: which path of a source's raw record feeds which canonical field.

A mapping file (TOML or JSON) per source, for example:

    source = "memberful"
    external_id = "id"
    changed_at = "attributes.updated_at"
    ignore = ["links", "relationships"]

    [fields]
    "attributes.email" = "email"
    "attributes.full_name" = { field = "full_name", transform = "strip" }
    "attributes.zip" = { field = "address.postal_code", transform = "str" }

Paths are dotted: dict keys, and integers for list indexes ("profile.emails.0"). A key that itself contains
a dot cannot be addressed. Pure: no database, network or clock.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from membersync.identity.normalize import FieldRejected, normalize_bool
from membersync.identity.schemas import ADDRESS_FIELD, ADDRESS_PARTS, ATTRIBUTE_PREFIX, MappedRecord, is_canonical_field

MAX_LEAVES = 500
# Deeper dicts are kept whole as one leaf; normalisation then rejects them if they nest too deep to store.
MAX_FLATTEN_DEPTH = 8
TRUNCATED_FIELD = f"{ATTRIBUTE_PREFIX}_truncated"
_ADDRESS_PREFIX = f"{ADDRESS_FIELD}."
_SETTINGS = ("source", "external_id", "changed_at", "fields", "ignore")
_RULE_SETTINGS = ("field", "transform")

Leaf = tuple[tuple[str, ...], Any]
_T = TypeVar("_T")


class MappingError(ValueError):
    """A mapping that cannot be used; the message names the offending key or file."""


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _to_bool(value: Any) -> Any:
    try:
        return normalize_bool(value)
    except FieldRejected:
        return value


def _to_str(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return value
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int too long to print; normalisation rejects it with a reason
            return value
    return value


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _join_space(value: Any) -> Any:
    if not isinstance(value, list) or not all(item is None or isinstance(item, str) for item in value):
        return value
    words = [item.strip() for item in value if item is not None and item.strip()]
    return " ".join(words) if words else None


# A transform that cannot apply passes the value through, so normalisation rejects it with a reason.
TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "strip": _strip,
    "lower": _lower,
    "upper": _upper,
    "bool": _to_bool,
    "str": _to_str,
    "first": _first,
    "join_space": _join_space,
}


@dataclass(frozen=True)
class MapRule:
    """Read `path` from the raw record, apply `transform`, and use the result as canonical `field`.

    `field` is a canonical field, or "address.<part>" to build the address from separate source fields.
    """

    path: str
    field: str
    transform: str | None = None

    def __post_init__(self) -> None:
        key = f"fields[{self.path!r}]"
        _check_path(self.path, key)
        if not isinstance(self.field, str) or not _is_target(self.field):
            raise MappingError(f"{key}: unknown canonical field {_short(self.field)}")
        if self.transform is not None and (not isinstance(self.transform, str) or self.transform not in TRANSFORMS):
            expected = ", ".join(TRANSFORMS)
            raise MappingError(f"{key}: unknown transform {_short(self.transform)} (expected one of {expected})")


@dataclass(frozen=True)
class FieldMapping:
    """How one source's raw records become MappedRecords."""

    source: str
    rules: tuple[MapRule, ...]
    external_id_path: str | None = None
    changed_at_path: str | None = None
    ignore_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise MappingError(f"source: must be a non-empty string, got {_short(self.source)}")
        if not isinstance(self.rules, tuple) or not all(isinstance(rule, MapRule) for rule in self.rules):
            raise MappingError("fields: must be MapRules")
        for key, path in (("external_id", self.external_id_path), ("changed_at", self.changed_at_path)):
            if path is not None:
                _check_path(path, key)
        if not isinstance(self.ignore_paths, tuple):
            raise MappingError("ignore: must be a list of paths")
        for index, path in enumerate(self.ignore_paths):
            _check_path(path, f"ignore[{index}]")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldMapping:
        """A mapping from its settings: source, fields, and optional external_id, changed_at and ignore.

        `fields` maps a source path to a canonical field name, or to a table with `field` and an optional
        `transform`. Raises MappingError naming the offending key.
        """
        if not isinstance(data, Mapping):
            raise MappingError(f"mapping must be a table of settings, got {type(data).__name__}")
        for key in data:
            if key not in _SETTINGS:
                raise MappingError(f"{_short(key)}: unknown setting (expected one of {', '.join(_SETTINGS)})")
        if "source" not in data:
            raise MappingError("source: missing (the name of the source this mapping reads)")
        return cls(
            source=data["source"],
            rules=_parse_rules(data.get("fields", {})),
            external_id_path=data.get("external_id"),
            changed_at_path=data.get("changed_at"),
            ignore_paths=_parse_ignore(data.get("ignore", [])),
        )

    @classmethod
    def from_file(cls, path: Path) -> FieldMapping:
        """A mapping from a .toml or .json file; MappingError naming the file if it cannot be read or used."""
        try:
            data = _load(path)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise MappingError(f"{path}: cannot read mapping: {error}") from None
        try:
            return cls.from_dict(data)
        except MappingError as error:
            raise MappingError(f"{path}: {error}") from None


def apply_mapping(mapping: FieldMapping, raw: Mapping[str, Any]) -> MappedRecord:
    """The raw record as canonical field -> raw value; never raises for bad values.

    Rules run in order and the first non-None value for a field wins. Every leaf no rule, id or time path
    consumed and no ignore path covers lands in "attributes.<dotted.path>". Nested dicts are flattened to
    their leaves, down to MAX_FLATTEN_DEPTH levels (a deeper dict is one leaf); lists are leaves, kept whole,
    so a rule reading "emails.0" does not consume "emails" (ignore it to keep it out of attributes). Past
    MAX_LEAVES leaves, remaining leaves are counted in "attributes._truncated" instead. The one loss: a
    leftover whose attribute name is already taken (by a rule's "attributes.x", or by a key with a dot in
    it) yields to the value already there.
    """
    values: dict[str, Any] = {}
    consumed: set[tuple[str, ...]] = set()
    _apply_rules(mapping.rules, raw, values, consumed)
    external_id = _take(raw, mapping.external_id_path, _external_id, consumed)
    changed_at = _take(raw, mapping.changed_at_path, parse_changed_at, consumed)
    ignored = {_segments(path) for path in mapping.ignore_paths}
    _add_leftovers(raw, values, consumed | ignored)
    return MappedRecord(values=values, external_id=external_id, changed_at=changed_at)


def parse_changed_at(raw: object) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text ("Z" accepted; no offset means UTC) or epoch seconds."""
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment.astimezone(UTC)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(raw, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _apply_rules(
    rules: tuple[MapRule, ...], raw: Mapping[str, Any], values: dict[str, Any], consumed: set[tuple[str, ...]]
) -> None:
    address: dict[str, Any] = {}
    for rule in rules:
        found, value = _read(raw, rule.path)
        if not found:
            continue
        consumed.add(_segments(rule.path))
        part = rule.field.removeprefix(_ADDRESS_PREFIX)
        target, key = (address, part) if _is_part(rule.field) else (values, rule.field)
        if target.get(key) is None:
            target[key] = TRANSFORMS[rule.transform](value) if rule.transform else value
    # A whole-address rule that found a value wins over address parts mapped one by one.
    if address and values.get(ADDRESS_FIELD) is None:
        values[ADDRESS_FIELD] = address


def _parse_rules(fields: object) -> tuple[MapRule, ...]:
    if not isinstance(fields, Mapping):
        raise MappingError("fields: must be a table of source path = canonical field")
    return tuple(_parse_rule(path, target) for path, target in fields.items())


def _parse_rule(path: Any, target: Any) -> MapRule:
    key = f"fields[{_short(path)}]"
    if isinstance(target, str):
        return MapRule(path, target)
    if not isinstance(target, Mapping):
        raise MappingError(f"{key}: must be a canonical field name or a table with field and transform")
    for setting in target:
        if setting not in _RULE_SETTINGS:
            raise MappingError(f"{key}.{_short(setting)}: unknown setting (expected field or transform)")
    if "field" not in target:
        raise MappingError(f"{key}.field: missing")
    if not isinstance(target.get("transform"), str | None):
        raise MappingError(f"{key}.transform: must be a string, got {_short(target['transform'])}")
    return MapRule(path, target["field"], target.get("transform"))


def _parse_ignore(ignore: object) -> tuple[str, ...]:
    if not isinstance(ignore, list | tuple):
        raise MappingError(f"ignore: must be a list of paths, got {_short(ignore)}")
    return tuple(ignore)


def _load(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        with path.open("rb") as file:
            return tomllib.load(file)
    if suffix == ".json":
        with path.open("rb") as file:
            return json.load(file)
    raise MappingError(f"{path}: mapping files must be .toml or .json")


def _check_path(path: object, key: str) -> None:
    if not isinstance(path, str) or not path or "" in path.split("."):
        raise MappingError(f"{key}: must be a dotted path like 'attributes.email', got {_short(path)}")


def _is_target(field: str) -> bool:
    return is_canonical_field(field) or _is_part(field)


def _is_part(field: str) -> bool:
    return field.startswith(_ADDRESS_PREFIX) and field.removeprefix(_ADDRESS_PREFIX) in ADDRESS_PARTS


def _short(value: object) -> str:
    text = repr(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= 80 else f"{text[:77]}..."


def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _read(raw: Any, path: str) -> tuple[bool, Any]:
    node = raw
    for segment in path.split("."):
        if isinstance(node, Mapping) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isascii() and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return False, None
    return True, node


def _take(
    raw: Mapping[str, Any], path: str | None, parse: Callable[[Any], _T | None], consumed: set[tuple[str, ...]]
) -> _T | None:
    if path is None:
        return None
    found, value = _read(raw, path)
    parsed = parse(value) if found else None
    if parsed is not None:
        consumed.add(_segments(path))
    return parsed


def _external_id(raw: object) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        try:
            return str(raw)
        except ValueError:  # too long to print: no id, and the value stays in attributes
            return None
    return None


def _add_leftovers(raw: Mapping[str, Any], values: dict[str, Any], covered: set[tuple[str, ...]]) -> None:
    dropped = 0
    for index, (path, value) in enumerate(_leaves(raw)):
        if any(path[:end] in covered for end in range(1, len(path) + 1)):
            continue
        if index >= MAX_LEAVES:
            dropped += 1
            continue
        values.setdefault(ATTRIBUTE_PREFIX + ".".join(path), value)
    if dropped:
        values[TRUNCATED_FIELD] = dropped


def _leaves(raw: Mapping[str, Any]) -> Iterator[Leaf]:
    # Iterative, so a hostile record nested a thousand levels deep cannot hit the recursion limit.
    pending: list[Leaf] = [((str(key),), value) for key, value in reversed(list(raw.items()))]
    while pending:
        path, node = pending.pop()
        if isinstance(node, Mapping) and node and len(path) < MAX_FLATTEN_DEPTH:
            pending.extend(((*path, str(key)), value) for key, value in reversed(list(node.items())))
        else:
            yield path, node
