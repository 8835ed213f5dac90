"""Query helpers composed into ordinary member queries, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, select, update

from membersync.clock import FrozenClock
from membersync.models import Member
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from membersync.tracker.entities import TrackerRegistry, TrackOptions
from membersync.tracker.queries import failed_in, needs_sync, synced_with
from tests.factories import make_member, make_tenant


async def _emails(runtime: Runtime, condition: ColumnElement[bool]) -> list[str]:
    async with runtime.database.read_sessions() as session:
        rows = await session.scalars(select(Member.email).where(condition).order_by(Member.email))
        return [email.split("@")[0] for email in rows.all()]


async def test_needs_sync_synced_with_and_failed_in(runtime: Runtime, clock: FrozenClock) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))
    tracker, registry = runtime.tracker, runtime.tracker.registry
    tenant = await make_tenant(runtime)
    members = {
        name: await make_member(runtime, tenant, f"{name}@example.org")
        for name in ("fresh", "never", "failing", "pending", "edited", "gone")
    }
    clock.advance(minutes=1)
    async with runtime.unit_of_work() as session:
        for name in ("fresh", "failing", "pending", "edited", "gone"):
            await tracker.mark_synced(session, members[name], f"CRM-{name}", "crm", clock.now())
        for _ in range(3):
            await tracker.mark_failed(session, members["failing"], "crm", "503", clock.now())
        await tracker.mark_pending(session, members["pending"], "crm", clock.now(), {"name": "P"})
        await tracker.mark_deleted(session, members["gone"], "crm", clock.now())
        edited_at = clock.now() + timedelta(minutes=5)
        await session.execute(update(Member).where(Member.id == members["edited"].id).values(updated_at=edited_at))
    assert await _emails(runtime, needs_sync(registry, Member, "crm")) == [
        "edited",
        "failing",
        "gone",
        "never",
        "pending",
    ]
    assert await _emails(runtime, synced_with(registry, Member, "crm")) == ["edited", "fresh"]
    assert await _emails(runtime, failed_in(registry, Member, "crm")) == ["failing"]
    assert await _emails(runtime, failed_in(registry, Member, None, min_retries=3)) == ["failing"]
    assert await _emails(runtime, failed_in(registry, Member, "crm", min_retries=4)) == []


async def test_track_options_narrow_what_needs_sync(runtime: Runtime, clock: FrozenClock) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))
    tenant = await make_tenant(runtime)
    members = {
        name: await make_member(runtime, tenant, f"{name}@example.org") for name in ("never", "edited", "pending")
    }
    clock.advance(minutes=1)
    async with runtime.unit_of_work() as session:
        for name in ("edited", "pending"):
            await runtime.tracker.mark_synced(session, members[name], f"CRM-{name}", "crm", clock.now())
        await runtime.tracker.mark_pending(session, members["pending"], "crm", clock.now())
        edited_at = clock.now() + timedelta(minutes=5)
        await session.execute(update(Member).where(Member.id == members["edited"].id).values(updated_at=edited_at))

    def registry_with(options: TrackOptions) -> TrackerRegistry:
        registry = TrackerRegistry(sources={"crm"})
        registry.register_entity(Member, "member", options=options)
        return registry

    everything = registry_with(TrackOptions())
    no_creations = registry_with(TrackOptions(track_created=False))
    no_updates = registry_with(TrackOptions(track_updated=False))
    assert await _emails(runtime, needs_sync(everything, Member, "crm")) == ["edited", "never", "pending"]
    assert await _emails(runtime, needs_sync(no_creations, Member, "crm")) == ["edited", "pending"]
    assert await _emails(runtime, needs_sync(no_updates, Member, "crm")) == ["never", "pending"]
