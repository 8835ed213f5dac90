"""Pure scheduling decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

TICK_INTERVAL = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_due(last_dispatched_at: datetime | None, refresh_interval: timedelta, now: datetime) -> bool:
    """Due when never dispatched, or when `last_dispatched_at + refresh_interval <= now`."""
    return last_dispatched_at is None or last_dispatched_at + refresh_interval <= now


def window_start(now: datetime, window: timedelta = TICK_INTERVAL) -> datetime:
    """The start of the tick window holding `now`; every scheduler computes the same one."""
    elapsed = now - _EPOCH
    return now - (elapsed % window)
