"""Cutting a push into batches and spreading them over the destination's budget. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta


def cut(member_ids: Sequence[int], size: int) -> list[list[int]]:
    """Consecutive batches of at most `size` members; none for no members."""
    if size < 1:
        raise ValueError("a batch holds at least one member")
    return [list(member_ids[start : start + size]) for start in range(0, len(member_ids), size)]


def schedule(count: int, start: datetime, spacing: timedelta) -> list[datetime]:
    """When each of `count` batches is due: one every `spacing` from `start`, so the budget is spent evenly
    (the limiter still decides; a batch due before budget frees up waits for it)."""
    return [start + spacing * index for index in range(count)]


def first_slot(now: datetime, last_scheduled: datetime | None, spacing: timedelta) -> datetime:
    """A new run starts after the batches already waiting for the same destination, or now."""
    if last_scheduled is None:
        return now
    return max(now, last_scheduled + spacing)


def slot_after_denial(
    frees_at: datetime, others_due_by_then: bool, last_scheduled: datetime | None, spacing: timedelta
) -> datetime:
    """When a batch that found no budget tries again: as soon as the budget frees if no other waiting batch
    is due by then (so the freed slot is not left unused), otherwise after every waiting batch (so batches
    turned away together do not all wake at the same moment)."""
    if not others_due_by_then:
        return frees_at
    return first_slot(frees_at, last_scheduled, spacing)
