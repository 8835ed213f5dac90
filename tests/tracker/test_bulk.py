"""`mark_synced_many`: whole pages of links at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from membersync.clock import FrozenClock
from membersync.errors import InvalidInput
from membersync.models import ExternalLink, Member
from membersync.runtime import Runtime
from membersync.tracker import events
from membersync.tracker.entities import EntityRef, default_registry
from membersync.tracker.service import ExternalIdTaken, SyncedLink, Tracker
from tests.factories import make_member, make_tenant


@pytest.fixture
def tracker() -> Tracker:
    registry = default_registry()
    registry.register_source("crm")
    return Tracker(registry)


async def _members(runtime: Runtime, count: int, slug: str = "acme") -> list[Member]:
    tenant = await make_tenant(runtime, slug)
    return [await make_member(runtime, tenant, f"m{index}@{slug}.example") for index in range(count)]


async def _links(runtime: Runtime) -> list[ExternalLink]:
    async with runtime.database.read_sessions() as session:
        return list((await session.scalars(select(ExternalLink).order_by(ExternalLink.entity_id))).all())


async def test_a_page_of_links_is_written_and_found(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    members = await _members(runtime, 3)
    page = [SyncedLink(member, f"CRM-{member.id}", {"n": index}) for index, member in enumerate(members)]
    async with runtime.unit_of_work() as session:
        assert await tracker.mark_synced_many(session, "crm", page, clock.now()) == 3
    async with runtime.database.read_sessions() as session:
        for member in members:
            found = await tracker.find_by_external_id(session, member.tenant_id, f"CRM-{member.id}", "crm", "member")
            assert found == EntityRef("member", str(member.id), member.tenant_id)
    assert {link.status for link in await _links(runtime)} == {"synced"}


async def test_a_second_page_updates_and_merges_metadata(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    [member] = await _members(runtime, 1)
    async with runtime.unit_of_work() as session:
        await tracker.mark_failed(session, member, "crm", "timeout", clock.now())
        await tracker.mark_synced_many(session, "crm", [SyncedLink(member, "CRM-1", {"a": 1})], clock.now())
    clock.advance(seconds=60)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced_many(session, "crm", [SyncedLink(member, "CRM-2", {"b": 2})], clock.now())
        await tracker.mark_synced_many(session, "crm", [SyncedLink(member, "CRM-2")], clock.now())
    [link] = await _links(runtime)
    assert (link.external_id, link.meta, link.retry_count, link.last_error) == ("CRM-2", {"a": 1, "b": 2}, 0, None)
    assert link.synced_at == clock.now()


async def test_replace_metadata_replaces(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    [member] = await _members(runtime, 1)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced_many(session, "crm", [SyncedLink(member, "CRM-1", {"a": 1})], clock.now())
        await tracker.mark_synced_many(
            session, "crm", [SyncedLink(member, "CRM-1")], clock.now(), replace_metadata=True
        )
    [link] = await _links(runtime)
    assert link.meta == {}


async def test_more_than_one_chunk(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    tenant = await make_tenant(runtime)
    refs = [EntityRef("member", str(index), tenant.id) for index in range(2500)]
    async with runtime.unit_of_work() as session:
        written = await tracker.mark_synced_many(
            session, "crm", [SyncedLink(ref, f"X{ref.entity_id}") for ref in refs], clock.now()
        )
    assert written == 2500
    async with runtime.database.read_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ExternalLink)) == 2500


async def test_one_entity_twice_keeps_the_last(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    [member] = await _members(runtime, 1)
    page = [SyncedLink(member, "OLD"), SyncedLink(member, "NEW")]
    async with runtime.unit_of_work() as session:
        assert await tracker.mark_synced_many(session, "crm", page, clock.now()) == 1
    assert [link.external_id for link in await _links(runtime)] == ["NEW"]


async def test_two_entities_claiming_one_id_in_a_page_are_refused(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    first, second = await _members(runtime, 2)
    with pytest.raises(ExternalIdTaken, match=f"member {first.id}.*member {second.id}"):
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced_many(
                session, "crm", [SyncedLink(first, "SAME"), SyncedLink(second, "SAME")], clock.now()
            )
    assert await _links(runtime) == []


async def test_claiming_an_id_held_outside_the_page_is_refused(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    first, second, third = await _members(runtime, 3)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced(session, first, "HELD", "crm", clock.now())
    page = [SyncedLink(second, "FREE"), SyncedLink(third, "HELD")]
    with pytest.raises(ExternalIdTaken, match=f"member {first.id}.*member {third.id}"):
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced_many(session, "crm", page, clock.now())
    assert [link.external_id for link in await _links(runtime)] == ["HELD"]


@pytest.mark.parametrize(
    ("link", "field"),
    [
        (SyncedLink(EntityRef("member", "1", 1), ""), "external_id"),
        (SyncedLink(EntityRef("member", "1", 1), "x" * 10_000), "external_id"),
        (SyncedLink(EntityRef("member", "1", 1), "ok", {"bad": object()}), "metadata"),
        (SyncedLink(EntityRef("invoice", "1", 1), "ok"), "entity_type"),
        (SyncedLink(object(), "ok"), "entity"),
    ],
)
async def test_one_bad_link_writes_nothing(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock, link: SyncedLink, field: str
) -> None:
    [member] = await _members(runtime, 1)
    with pytest.raises(InvalidInput, match=field):
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced_many(session, "crm", [SyncedLink(member, "GOOD"), link], clock.now())
    assert await _links(runtime) == []


async def test_unknown_source_is_refused(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    with pytest.raises(InvalidInput, match="source"):
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced_many(session, "nowhere", [], clock.now())


async def test_events_fire_per_link_after_commit_only(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    members = await _members(runtime, 2)
    seen: list[str] = []

    def receiver(link: ExternalLink, entity: EntityRef) -> None:
        seen.append(entity.entity_id)

    events.entity_synced.connect(receiver)
    try:
        with pytest.raises(RuntimeError):  # noqa: PT012
            async with runtime.unit_of_work() as session:
                await tracker.mark_synced_many(session, "crm", [SyncedLink(members[0], "A")], clock.now())
                raise RuntimeError("rolled back")
        assert seen == []
        async with runtime.unit_of_work() as session:
            page = [SyncedLink(member, f"ID{member.id}") for member in members]
            await tracker.mark_synced_many(session, "crm", page, clock.now())
            assert seen == []
        assert sorted(seen) == sorted(str(member.id) for member in members)
    finally:
        events.entity_synced.disconnect(receiver)


async def test_find_many_by_external_id(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    members = await _members(runtime, 3)
    other = await _members(runtime, 1, slug="other")
    async with runtime.unit_of_work() as session:
        page = [SyncedLink(member, f"CRM-{index}") for index, member in enumerate(members + other)]
        await tracker.mark_synced_many(session, "crm", page, clock.now())
    tenant_id = members[0].tenant_id
    async with runtime.database.read_sessions() as session:
        found = await tracker.find_many_by_external_id(
            session, tenant_id, ["CRM-0", "CRM-2", "CRM-2", "CRM-3", "missing"], "crm", "member"
        )
        assert found == {
            "CRM-0": EntityRef("member", str(members[0].id), tenant_id),
            "CRM-2": EntityRef("member", str(members[2].id), tenant_id),
        }
        assert await tracker.find_many_by_external_id(session, tenant_id, [], "crm", "member") == {}
        with pytest.raises(InvalidInput, match="external_id"):
            await tracker.find_many_by_external_id(session, tenant_id, ["ok", ""], "crm", "member")
