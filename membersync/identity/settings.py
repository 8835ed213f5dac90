"""A tenant's identity settings (policies, thresholds, phone region) from their stored JSON form. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from membersync.errors import InvalidInput
from membersync.identity.matching import Thresholds
from membersync.identity.normalize import NormaliseOptions
from membersync.identity.policy import MergePolicies, PolicyError


@dataclass(frozen=True)
class IdentityOptions:
    """How records are normalised, matched and merged; a tenant's own are stored on the tenant."""

    policies: MergePolicies = field(default_factory=MergePolicies)
    thresholds: Thresholds = field(default_factory=Thresholds)
    normalise: NormaliseOptions = field(default_factory=NormaliseOptions)
    # A manual edit names its member by email: it never matches on phone or a fuzzy name.
    email_only: bool = False


KEYS = {"policies", "thresholds", "default_region"}
REGION = re.compile(r"^[A-Z]{2}$")


def options_from(data: Mapping[str, Any] | None) -> IdentityOptions:
    """`{"policies": {...}, "thresholds": {"auto_merge": 0.92, "review": 0.75}, "default_region": "GB"}`,
    every key optional; `InvalidInput` naming the key at fault."""
    if data is None:
        return IdentityOptions()
    if not isinstance(data, Mapping):
        raise InvalidInput("identity settings: must be a JSON object")
    unknown = set(data) - KEYS
    if unknown:
        raise InvalidInput(f"identity settings: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(KEYS))})")
    return IdentityOptions(
        policies=_policies(data.get("policies")),
        thresholds=_thresholds(data.get("thresholds")),
        normalise=NormaliseOptions(default_region=_region(data.get("default_region", "GB"))),
    )


def _policies(raw: Any) -> MergePolicies:
    if raw is None:
        return MergePolicies()
    try:
        return MergePolicies.from_dict(raw)
    except PolicyError as error:
        raise InvalidInput(f"policies: {error}") from None


def _thresholds(raw: Any) -> Thresholds:
    if raw is None:
        return Thresholds()
    if not isinstance(raw, Mapping) or set(raw) - {"auto_merge", "review"}:
        raise InvalidInput("thresholds: must be an object with auto_merge and/or review")
    values = {key: raw[key] for key in ("auto_merge", "review") if key in raw}
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in values.values()):
        raise InvalidInput("thresholds: auto_merge and review must be numbers")
    try:
        return Thresholds(**{key: float(value) for key, value in values.items()})
    except ValueError as error:
        raise InvalidInput(f"thresholds: {error}") from None


def _region(raw: Any) -> str:
    if not isinstance(raw, str) or not REGION.match(raw):
        raise InvalidInput("default_region: must be a two-letter region code like GB")
    return raw
