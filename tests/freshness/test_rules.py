from __future__ import annotations

from datetime import UTC, datetime, timedelta

from membersync.freshness.rules import is_stale, stale_for_login
from membersync.scheduling.plan import is_due, window_start

NOW = datetime(2026, 5, 1, 12, 3, 20, tzinfo=UTC)


def test_missing_profile_is_stale() -> None:
    assert is_stale(None, timedelta(minutes=30), NOW)


def test_profile_is_stale_once_the_bound_is_reached() -> None:
    bound = timedelta(minutes=30)
    assert not is_stale(NOW - bound + timedelta(seconds=1), bound, NOW)
    assert is_stale(NOW - bound, bound, NOW)


def test_stale_for_login_lists_only_stale_or_missing() -> None:
    ages = {"fresh": timedelta(hours=1), "old": timedelta(minutes=5), "never": timedelta(hours=1)}
    synced = {"fresh": NOW - timedelta(minutes=10), "old": NOW - timedelta(minutes=10)}
    assert stale_for_login(ages, synced, NOW) == ["old", "never"]


def test_due_when_never_dispatched_or_interval_passed() -> None:
    interval = timedelta(hours=6)
    assert is_due(None, interval, NOW)
    assert is_due(NOW - interval, interval, NOW)
    assert not is_due(NOW - interval + timedelta(seconds=1), interval, NOW)


def test_window_start_is_the_same_for_every_moment_of_a_window() -> None:
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert window_start(NOW) == start
    assert window_start(start) == start
    assert window_start(start + timedelta(minutes=4, seconds=59)) == start
    assert window_start(start + timedelta(minutes=5)) == start + timedelta(minutes=5)
