"""Field-level merge policies: whether an incoming value replaces a member's current one. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from membersync.identity.schemas import ATTRIBUTE_PREFIX, FieldValue, is_canonical_field

LOCAL_SOURCE = "local"


class Policy(StrEnum):
    NEWEST_WINS = "newest_wins"
    SOURCE_PRIORITY = "source_priority"
    LOCAL_WINS = "local_wins"
    MANUAL = "manual"


class Outcome(StrEnum):
    APPLY = "apply"  # the incoming value replaces the current one
    TOUCH = "touch"  # same value, newer: only its provenance moves on
    UNCHANGED = "unchanged"  # same value, nothing to write
    KEEP = "keep"  # the current value stays; the reason says why
    CONFLICT = "conflict"  # a person must decide


@dataclass(frozen=True)
class FieldPolicy:
    policy: Policy
    sources: tuple[str, ...] = ()  # SOURCE_PRIORITY: highest first; "local" stands for edits in membersync


@dataclass(frozen=True)
class Current:
    """A member's current value of one field and where it came from (None when unknown)."""

    value: Any
    source: str | None = None
    changed_at: datetime | None = None

    @property
    def local(self) -> bool:
        return self.source == LOCAL_SOURCE


@dataclass(frozen=True)
class FieldDecision:
    field: str
    outcome: Outcome
    incoming: FieldValue
    reason: str


NEWEST = FieldPolicy(Policy.NEWEST_WINS)
# Email is how members are told apart and reached: a source changing it asks a person first.
DEFAULT_FIELD_POLICIES: Mapping[str, FieldPolicy] = {"email": FieldPolicy(Policy.MANUAL)}


class PolicyError(ValueError):
    """A policy configuration that cannot be used, naming the key at fault."""


@dataclass(frozen=True)
class MergePolicies:
    """The policy of every field: exact field name, then `attributes.*` for any attribute, then the default."""

    default: FieldPolicy = NEWEST
    fields: Mapping[str, FieldPolicy] = field(default_factory=lambda: dict(DEFAULT_FIELD_POLICIES))

    def for_field(self, name: str) -> FieldPolicy:
        if name in self.fields:
            return self.fields[name]
        if name.startswith(ATTRIBUTE_PREFIX) and "attributes.*" in self.fields:
            return self.fields["attributes.*"]
        return self.default

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MergePolicies:
        """From `{"default": "newest_wins", "fields": {"phone": "local_wins", "tier": {"policy":
        "source_priority", "sources": ["patreon", "crm"]}}}`; fields not named keep the built-in defaults."""
        if not isinstance(data, Mapping):
            raise PolicyError("policies: must be an object")
        unknown = set(data) - {"default", "fields"}
        if unknown:
            raise PolicyError(f"policies: unknown key {sorted(unknown)[0]!r}")
        default = _field_policy("default", data.get("default", Policy.NEWEST_WINS.value))
        raw_fields = data.get("fields", {})
        if not isinstance(raw_fields, Mapping):
            raise PolicyError("fields: must be an object")
        fields = dict(DEFAULT_FIELD_POLICIES)
        for name, raw in raw_fields.items():
            if not (is_canonical_field(name) or name == "attributes.*"):
                raise PolicyError(f"fields.{name}: not a canonical member field")
            fields[name] = _field_policy(f"fields.{name}", raw)
        return cls(default=default, fields=fields)


def _field_policy(key: str, raw: Any) -> FieldPolicy:
    spec = {"policy": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, Mapping) or set(spec) - {"policy", "sources"}:
        raise PolicyError(f"{key}: must be a policy name or {{policy, sources}}")
    try:
        policy = Policy(str(spec.get("policy")))
    except ValueError:
        names = ", ".join(item.value for item in Policy)
        raise PolicyError(f"{key}: unknown policy {spec.get('policy')!r} (one of {names})") from None
    sources = spec.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(source, str) and source for source in sources):
        raise PolicyError(f"{key}.sources: must be a list of source names")
    if policy is Policy.SOURCE_PRIORITY and not sources:
        raise PolicyError(f"{key}.sources: source_priority needs the sources in order")
    return FieldPolicy(policy, tuple(sources))


def order_key(changed_at: datetime | None, source: str | None, value: Any) -> tuple[float, str, str]:
    """Total order of versions of one field: change time, then source name, then the value itself, so ties
    break the same way whatever order updates arrive in."""
    moment = changed_at.timestamp() if changed_at is not None else float("-inf")
    return (moment, source or "", json.dumps(value, sort_keys=True, default=str))


def _newer(current: Current, incoming: FieldValue) -> bool:
    if current.changed_at is None:
        return True
    if incoming.changed_at != current.changed_at:
        return incoming.changed_at > current.changed_at
    if incoming.source != current.source:
        return incoming.source > (current.source or "")
    if incoming.value == current.value:
        return False
    return order_key(None, None, incoming.value) > order_key(None, None, current.value)


def decide_field(name: str, current: Current, incoming: FieldValue, policy: FieldPolicy) -> FieldDecision:
    """What happens to one incoming value under `policy`."""
    if incoming.value == current.value:
        # Under local_wins a value edited in membersync stays marked as such even when a source agrees.
        protected = current.local and policy.policy is Policy.LOCAL_WINS
        outcome = Outcome.TOUCH if _newer(current, incoming) and not protected else Outcome.UNCHANGED
        return FieldDecision(name, outcome, incoming, "same value")
    if current.value is None:
        return FieldDecision(name, Outcome.APPLY, incoming, "the member had no value")
    if policy.policy is Policy.MANUAL:
        return FieldDecision(name, Outcome.CONFLICT, incoming, "policy manual: a person decides")
    if policy.policy is Policy.LOCAL_WINS and current.local:
        return FieldDecision(name, Outcome.KEEP, incoming, "policy local_wins: edited in membersync")
    if policy.policy is Policy.SOURCE_PRIORITY:
        return _by_priority(name, current, incoming, policy.sources)
    return _by_time(name, current, incoming)


def _by_time(name: str, current: Current, incoming: FieldValue) -> FieldDecision:
    if _newer(current, incoming):
        return FieldDecision(name, Outcome.APPLY, incoming, "newer than the current value")
    return FieldDecision(name, Outcome.KEEP, incoming, "older than the current value")


def _by_priority(name: str, current: Current, incoming: FieldValue, sources: tuple[str, ...]) -> FieldDecision:
    def rank(source: str | None) -> int:
        return sources.index(source) if source in sources else len(sources)

    incoming_rank, current_rank = rank(incoming.source), rank(current.source)
    if incoming_rank < current_rank:
        return FieldDecision(name, Outcome.APPLY, incoming, f"{incoming.source} ranks above {current.source}")
    if incoming_rank > current_rank:
        return FieldDecision(name, Outcome.KEEP, incoming, f"{current.source} ranks above {incoming.source}")
    if incoming_rank == len(sources) and incoming.source != current.source:
        return FieldDecision(name, Outcome.CONFLICT, incoming, "neither source is ranked by source_priority")
    return _by_time(name, current, incoming)
