"""Merging a record into a member's state, as pure functions: nothing is lost, order does not matter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

from hypothesis import given, settings
from hypothesis import strategies as st

from membersync.identity.merge import merge_record, new_member
from membersync.identity.policy import FieldPolicy, MergePolicies, Policy
from membersync.identity.schemas import FieldValue, NormalisedRecord
from membersync.identity.state import MemberState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FIELDS = ("email", "phone", "membership_tier", "attributes.plan")
POLICIES = st.sampled_from(list(Policy)).map(
    lambda policy: FieldPolicy(policy, ("crm", "patreon") if policy is Policy.SOURCE_PRIORITY else ())
)


def _record(source: str, minutes: int, values: dict[str, str]) -> NormalisedRecord:
    at = T0 + timedelta(minutes=minutes)
    return NormalisedRecord(source, None, at, {name: FieldValue(value, source, at) for name, value in values.items()})


records = st.builds(
    _record,
    source=st.sampled_from(["crm", "patreon", "klaviyo", "local"]),
    minutes=st.integers(0, 5),
    values=st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(["a", "b", "c"]), min_size=1),
)


@settings(max_examples=200, deadline=None)
@given(start=records, incoming=records, policy=POLICIES)
def test_every_incoming_value_is_applied_unchanged_kept_or_in_a_conflict(
    start: NormalisedRecord, incoming: NormalisedRecord, policy: FieldPolicy
) -> None:
    state = new_member(start)
    result = merge_record(state, incoming, MergePolicies(default=policy, fields={}))
    accounted = (
        [change.field for change in result.changes]
        + [conflict.field for conflict in result.conflicts]
        + [kept.field for kept in result.kept]
        + result.unchanged
    )
    assert sorted(accounted) == sorted(incoming.values)
    assert all(kept.reason for kept in result.kept)


@settings(max_examples=100, deadline=None)
@given(st.lists(records, min_size=2, max_size=4))
def test_newest_wins_ends_in_the_same_member_whatever_the_order(updates: list[NormalisedRecord]) -> None:
    policies = MergePolicies(default=FieldPolicy(Policy.NEWEST_WINS), fields={})
    endings = set()
    for order in permutations(updates):
        state = MemberState(1, {}, {})
        for record in order:
            merge_record(state, record, policies)
        endings.add(tuple(sorted(state.values.items())))
    assert len(endings) == 1
