"""`mark_synced_selected`: links written from a query, for a destination keyed by a value the entity holds."""

from __future__ import annotations

import pytest
from sqlalchemy import String, cast, select, update

from membersync.clock import FrozenClock
from membersync.errors import InvalidInput
from membersync.models import ExternalLink, Member
from membersync.runtime import Runtime
from membersync.tracker import events
from membersync.tracker.entities import EntityRef, SelectedLinks, default_registry
from membersync.tracker.service import SyncedLink, Tracker
from tests.factories import make_member, make_tenant


@pytest.fixture
def tracker() -> Tracker:
    registry = default_registry()
    registry.register_source("mailer")
    return Tracker(registry)


def _emails_of(*members: Member, source: str = "mailer") -> SelectedLinks:
    rows = select(cast(Member.id, String), Member.email).where(Member.id.in_([member.id for member in members]))
    return SelectedLinks(members[0].tenant_id, source, "member", rows)


async def _members(runtime: Runtime, count: int) -> list[Member]:
    tenant = await make_tenant(runtime)
    return [await make_member(runtime, tenant, f"m{index}@example.org") for index in range(count)]


async def _set_email(runtime: Runtime, member: Member, email: str) -> None:
    async with runtime.unit_of_work() as session:
        await session.execute(update(Member).where(Member.id == member.id).values(email=email))


async def _links(runtime: Runtime) -> dict[str, ExternalLink]:
    async with runtime.database.read_sessions() as session:
        return {link.entity_id: link for link in (await session.scalars(select(ExternalLink))).all()}


async def _mark(runtime: Runtime, tracker: Tracker, clock: FrozenClock, *members: Member) -> None:
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced_selected(session, _emails_of(*members), clock.now())


async def test_selected_entities_are_linked_then_refreshed_keeping_metadata(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    first, second = await _members(runtime, 2)
    async with runtime.unit_of_work() as session:
        await tracker.mark_failed(session, first, "mailer", "timeout", clock.now())
        await tracker.mark_synced_many(session, "mailer", [SyncedLink(first, "old", {"list": "weekly"})], clock.now())
    clock.advance(seconds=60)
    async with runtime.unit_of_work() as session:
        await tracker.mark_synced_selected(session, _emails_of(first, second), clock.now())
    links = await _links(runtime)
    assert {key: (link.external_id, link.status, link.synced_at) for key, link in links.items()} == {
        str(first.id): ("m0@example.org", "synced", clock.now()),
        str(second.id): ("m1@example.org", "synced", clock.now()),
    }
    assert links[str(first.id)].meta == {"list": "weekly"}
    assert (links[str(first.id)].retry_count, links[str(first.id)].last_error) == (0, None)


async def test_an_email_that_moved_to_another_member_leaves_the_old_holder_pending(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    first, second = await _members(runtime, 2)
    await _mark(runtime, tracker, clock, first)
    await _set_email(runtime, first, "renamed@example.org")
    await _set_email(runtime, second, "m0@example.org")
    await _mark(runtime, tracker, clock, second)
    links = await _links(runtime)
    assert (links[str(second.id)].external_id, links[str(second.id)].status) == ("m0@example.org", "synced")
    held = links[str(first.id)]
    assert (held.external_id, held.status, held.synced_at) == (None, "pending", None)


async def test_two_members_swapping_emails_are_both_linked(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    first, second = await _members(runtime, 2)
    await _mark(runtime, tracker, clock, first, second)
    await _set_email(runtime, first, "swap@example.org")
    await _set_email(runtime, second, "m0@example.org")
    await _set_email(runtime, first, "m1@example.org")
    await _mark(runtime, tracker, clock, first, second)
    links = await _links(runtime)
    assert {key: (link.external_id, link.status) for key, link in links.items()} == {
        str(first.id): ("m1@example.org", "synced"),
        str(second.id): ("m0@example.org", "synced"),
    }


async def test_events_fire_after_commit_for_each_selected_entity(
    runtime: Runtime, tracker: Tracker, clock: FrozenClock
) -> None:
    members = await _members(runtime, 3)
    seen: list[EntityRef] = []

    def receiver(link: ExternalLink, entity: EntityRef) -> None:
        seen.append(entity)

    events.entity_synced.connect(receiver)
    try:
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced_selected(session, _emails_of(*members), clock.now())
            assert seen == []
    finally:
        events.entity_synced.disconnect(receiver)
    assert sorted(ref.entity_id for ref in seen) == sorted(str(member.id) for member in members)


async def test_an_unknown_source_is_refused(runtime: Runtime, tracker: Tracker, clock: FrozenClock) -> None:
    [member] = await _members(runtime, 1)
    with pytest.raises(InvalidInput, match="source"):
        async with runtime.unit_of_work() as session:
            await tracker.mark_synced_selected(session, _emails_of(member, source="nowhere"), clock.now())
    assert await _links(runtime) == {}
