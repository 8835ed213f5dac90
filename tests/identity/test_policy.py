"""Merge policies as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membersync.identity.policy import (
    Current,
    FieldPolicy,
    MergePolicies,
    Outcome,
    Policy,
    PolicyError,
    decide_field,
)
from membersync.identity.schemas import FieldValue

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _in(value: Any, source: str = "crm", minutes: int = 0) -> FieldValue:
    return FieldValue(value, source, T0 + timedelta(minutes=minutes))


def _current(value: Any, source: str | None = "crm", minutes: int | None = 0) -> Current:
    return Current(value, source, None if minutes is None else T0 + timedelta(minutes=minutes))


NEWEST = FieldPolicy(Policy.NEWEST_WINS)


@pytest.mark.parametrize(
    ("current", "incoming", "policy", "outcome"),
    [
        (_current("a"), _in("a", minutes=5), NEWEST, Outcome.TOUCH),
        (_current("a", minutes=5), _in("a"), NEWEST, Outcome.UNCHANGED),
        (_current(None, None, None), _in("b"), FieldPolicy(Policy.MANUAL), Outcome.APPLY),
        (_current("a"), _in("b", minutes=1), NEWEST, Outcome.APPLY),
        (_current("a", minutes=1), _in("b"), NEWEST, Outcome.KEEP),
        (_current("a", minutes=None), _in("b"), NEWEST, Outcome.APPLY),
        (_current("a"), _in("b", minutes=9), FieldPolicy(Policy.MANUAL), Outcome.CONFLICT),
        (_current("a", "local"), _in("b", minutes=9), FieldPolicy(Policy.LOCAL_WINS), Outcome.KEEP),
        (_current("a", "crm"), _in("b", minutes=9), FieldPolicy(Policy.LOCAL_WINS), Outcome.APPLY),
        (_current("a", "local"), _in("a", minutes=9), FieldPolicy(Policy.LOCAL_WINS), Outcome.UNCHANGED),
    ],
)
def test_each_policy(current: Current, incoming: FieldValue, policy: FieldPolicy, outcome: Outcome) -> None:
    decision = decide_field("phone", current, incoming, policy)
    assert decision.outcome is outcome
    assert decision.reason


def test_source_priority_ranks_sources_then_time() -> None:
    policy = FieldPolicy(Policy.SOURCE_PRIORITY, ("patreon", "crm"))
    assert decide_field("tier", _current("a", "crm", 9), _in("b", "patreon"), policy).outcome is Outcome.APPLY
    assert decide_field("tier", _current("a", "patreon"), _in("b", "crm", 9), policy).outcome is Outcome.KEEP
    assert decide_field("tier", _current("a", "crm"), _in("b", "crm", 1), policy).outcome is Outcome.APPLY
    assert decide_field("tier", _current("a", "crm"), _in("b", "eventbrite", 9), policy).outcome is Outcome.KEEP
    unranked = decide_field("tier", _current("a", "klaviyo"), _in("b", "eventbrite", 9), policy)
    assert (unranked.outcome, unranked.reason) == (Outcome.CONFLICT, "neither source is ranked by source_priority")


def test_defaults_and_lookup_order() -> None:
    policies = MergePolicies()
    assert policies.for_field("email").policy is Policy.MANUAL
    assert policies.for_field("phone").policy is Policy.NEWEST_WINS
    configured = MergePolicies.from_dict(
        {
            "default": "local_wins",
            "fields": {"attributes.*": "manual", "attributes.vip": "newest_wins", "membership_tier": "manual"},
        }
    )
    assert configured.for_field("attributes.vip").policy is Policy.NEWEST_WINS
    assert configured.for_field("attributes.shoe").policy is Policy.MANUAL
    assert configured.for_field("phone").policy is Policy.LOCAL_WINS
    assert configured.for_field("email").policy is Policy.MANUAL


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "policies: must be an object"),
        ({"colour": 1}, "unknown key 'colour'"),
        ({"default": "loudest_wins"}, "default: unknown policy 'loudest_wins'"),
        ({"fields": {"shoe_size": "manual"}}, "fields.shoe_size: not a canonical member field"),
        ({"fields": {"phone": {"policy": "source_priority"}}}, "fields.phone.sources"),
        ({"fields": {"phone": {"policy": "source_priority", "sources": [1]}}}, "fields.phone.sources"),
        ({"fields": ["phone"]}, "fields: must be an object"),
    ],
)
def test_bad_configuration_names_the_key(data: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        MergePolicies.from_dict(data)


def _fold(updates: tuple[FieldValue, ...]) -> Any:
    current = Current(None)
    for update in updates:
        decision = decide_field("phone", current, update, NEWEST)
        if decision.outcome in (Outcome.APPLY, Outcome.TOUCH):
            current = Current(update.value, update.source, update.changed_at)
    return current.value


updates = st.lists(
    st.builds(
        FieldValue,
        value=st.sampled_from(["a", "b", "c", None, 1]),
        source=st.sampled_from(["crm", "patreon", "klaviyo"]),
        changed_at=st.integers(0, 3).map(lambda minutes: T0 + timedelta(minutes=minutes)),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(updates)
def test_newest_wins_ends_the_same_in_any_order(values: list[FieldValue]) -> None:
    values = [value for value in values if value.value is not None] or [_in("a")]
    outcomes = {repr(_fold(order)) for order in permutations(values)}
    assert len(outcomes) == 1
