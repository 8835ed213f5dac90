"""Pure staleness rules."""

from __future__ import annotations

from datetime import datetime, timedelta


def is_stale(synced_at: datetime | None, max_age: timedelta, now: datetime) -> bool:
    """A profile never synced, or synced longer than `max_age` ago, is stale."""
    return synced_at is None or synced_at + max_age <= now


def stale_for_login(login_ages: dict[str, timedelta], synced_at: dict[str, datetime], now: datetime) -> list[str]:
    """The providers, among those with a login bound, whose profile is missing or older than the bound."""
    return [name for name, max_age in login_ages.items() if is_stale(synced_at.get(name), max_age, now)]
