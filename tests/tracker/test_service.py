"""The tracker's library API on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from membersync.clock import FrozenClock
from membersync.errors import InvalidInput
from membersync.models import ExternalLink, Member, Tenant
from membersync.runtime import Runtime
from membersync.tracker.entities import EntityRef, default_registry
from membersync.tracker.service import ExternalIdTaken, Tracker
from tests.factories import make_member, make_tenant


@pytest.fixture
def tracker() -> Tracker:
    registry = default_registry()
    for source in ("crm", "donors"):
        registry.register_source(source)
    return Tracker(registry)


async def _link_count(runtime: Runtime) -> int:
    async with runtime.database.read_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ExternalLink)) or 0)


async def _member(runtime: Runtime, email: str = "ada@example.org") -> Member:
    tenant = await make_tenant(runtime) if email == "ada@example.org" else None
    assert tenant is not None
    return await make_member(runtime, tenant, email)


async def test_mark_synced_then_every_lookup(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    async with runtime.unit_of_work() as session:
        link = await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata={"tier": "gold"})
    assert (link.status, link.external_id, link.synced_at, link.meta) == (
        "synced",
        "CRM-1",
        clock.now(),
        {"tier": "gold"},
    )
    async with runtime.database.read_sessions() as session:
        assert await tracker.is_synced(session, member)
        assert await tracker.is_synced(session, member, "crm")
        assert not await tracker.is_synced(session, member, "donors")
        assert await tracker.external_id(session, member, "crm") == "CRM-1"
        assert [link.source for link in await tracker.links(session, member)] == ["crm"]
        found = await tracker.find_by_external_id(session, member.tenant_id, "CRM-1", "crm", "member")
    assert found == EntityRef("member", str(member.id), member.tenant_id)


async def test_metadata_merges_unless_replaced(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata={"a": 1, "b": 1})
        merged = await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata={"b": 2, "c": 3})
        assert merged.meta == {"a": 1, "b": 2, "c": 3}
        replaced = await tracker.mark_synced(
            session, member, "CRM-1", "crm", clock.now(), metadata={"z": 0}, replace_metadata=True
        )
        assert replaced.meta == {"z": 0}


async def test_metadata_merges_top_level_keys_alike_on_every_database(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    member = await _member(runtime)
    first = {"plan": {"tier": "gold", "seats": 2}, "tags": ["a"], "gone": 1, "flag": False}
    second = {"plan": {"tier": "silver"}, "gone": None, "flag": True, "note": 'say "hi"', "ratio": 0.5}
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata=first)
        merged = await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata=second)
    assert merged.meta == {
        "plan": {"tier": "silver"},
        "tags": ["a"],
        "gone": None,
        "flag": True,
        "note": 'say "hi"',
        "ratio": 0.5,
    }


async def test_concurrent_metadata_updates_lose_nothing(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())

    async def add(key: str) -> None:
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata={key: True})

    await asyncio.gather(*(add(f"k{index}") for index in range(8)))
    async with runtime.database.read_sessions() as session:
        [link] = await tracker.links(session, member)
    assert link.meta == {f"k{index}": True for index in range(8)}


async def test_concurrent_mark_synced_leaves_one_link(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)

    async def write(index: int) -> None:
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata={"writer": index})

    await asyncio.gather(*(write(index) for index in range(10)))
    async with runtime.database.read_sessions() as session:
        [link] = await tracker.links(session, member)
    assert link.external_id == "CRM-1"
    assert link.meta["writer"] in range(10)


async def test_two_entities_claiming_one_external_id_are_refused(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    ada = await _member(runtime)
    bob = await make_member(runtime, await _tenant(runtime, ada), "bob@example.org")
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, ada, "CRM-1", "crm", clock.now())
    with pytest.raises(ExternalIdTaken, match=rf"linked to member {ada.id}; member {bob.id} cannot claim it"):
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced(session, bob, "CRM-1", "crm", clock.now())
    assert await _link_count(runtime) == 1


async def _tenant(runtime: Runtime, member: Member) -> Tenant:
    async with runtime.database.read_sessions() as session:
        tenant = await session.get(Tenant, member.tenant_id)
        assert tenant is not None
        return tenant


async def test_mark_failed_keeps_the_last_good_sync(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    synced_at = clock.now()
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", synced_at)
    clock.advance(hours=1)
    for attempt in (1, 2):
        async with runtime.unit_of_work() as session:
            link = await tracker.mark_failed(session, member, "crm", RuntimeError(f"503 #{attempt}"), clock.now())
    assert (link.status, link.synced_at, link.external_id, link.retry_count) == ("failed", synced_at, "CRM-1", 2)
    assert link.last_error == "RuntimeError: 503 #2"
    async with runtime.unit_of_work() as session:
        never = await tracker.mark_failed(session, member, "donors", "timeout", clock.now())
    assert (never.synced_at, never.external_id, never.retry_count) == (None, None, 1)


async def test_mark_pending_merges_local_changes(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
        await tracker.mark_pending(session, member, "crm", clock.now(), {"name": "Ada"})
        link = await tracker.mark_pending(session, member, "crm", clock.now(), {"phone": "+44"})
    assert link.status == "pending"
    assert link.meta["pending_changes"] == {"name": "Ada", "phone": "+44"}
    async with runtime.database.read_sessions() as session:
        assert not await tracker.is_synced(session, member, "crm")


async def test_concurrent_pending_changes_lose_nothing(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now(), metadata={"tier": "gold"})

    async def change(field: str) -> None:
        async with runtime.unit_of_work() as session:
            await tracker.mark_pending(session, member, "crm", clock.now(), {field: "new"})

    await asyncio.gather(*(change(f"field{index}") for index in range(8)))
    async with runtime.database.read_sessions() as session:
        [link] = await tracker.links(session, member)
    assert link.meta == {"tier": "gold", "pending_changes": {f"field{index}": "new" for index in range(8)}}


async def test_bad_pending_changes_write_nothing(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    with pytest.raises(InvalidInput, match="metadata"):
        async with runtime.unit_of_work() as session:
            await tracker.mark_pending(session, member, "crm", clock.now(), {"when": clock.now()})
    assert await _link_count(runtime) == 0


async def test_deleted_then_recreated_revives_the_link(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
        assert await tracker.mark_deleted(session, member, "crm", clock.now())
    async with runtime.database.read_sessions() as session:
        assert not await tracker.is_synced(session, member, "crm")
        [link] = await tracker.links(session, member)
        assert link.deleted_at == clock.now()
    clock.advance(timedelta(days=1))
    async with runtime.unit_of_work() as session:
        revived = await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
    assert (revived.deleted_at, revived.id) == (None, link.id)


@pytest.mark.parametrize(
    ("external_id", "source", "metadata", "field"),
    [
        ("CRM-1", "nope", None, "source"),
        ("", "crm", None, "external_id"),
        ("   ", "crm", None, "external_id"),
        ("x" * 10_240, "crm", None, "external_id"),
        ("CRM\x00", "crm", None, "external_id"),
        ("CRM-1", "crm", {"when": object()}, "metadata"),
        ("CRM-1", "crm", {"nan": float("nan")}, "metadata"),
        ("CRM-1", "crm", ["not", "an", "object"], "metadata"),
    ],
)
async def test_bad_input_is_refused_and_nothing_written(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock, external_id: str, source: str, metadata: object, field: str
) -> None:
    member = await _member(runtime)
    with pytest.raises(InvalidInput, match=f"^{field}: "):
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced(session, member, external_id, source, clock.now(), metadata=metadata)  # type: ignore[arg-type]
    assert await _link_count(runtime) == 0


async def test_lookups_are_scoped_to_the_tenant(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    member = await _member(runtime)
    other = await make_tenant(runtime, "other")
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
    async with runtime.database.read_sessions() as session:
        assert await tracker.find_by_external_id(session, other.id, "CRM-1", "crm", "member") is None
