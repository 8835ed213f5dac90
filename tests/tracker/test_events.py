"""Tracker events: sent once per commit, only after it, never on rollback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from blinker import Signal
from sqlalchemy import func, select

from membersync.clock import FrozenClock
from membersync.models import ExternalLink, Member
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from membersync.tracker import events
from membersync.tracker.entities import EntityRef, TrackOptions
from membersync.tracker.service import ExternalIdTaken
from tests.factories import make_member, make_tenant


@pytest.fixture
def received() -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    receivers = []
    for name, signal in (
        ("entity_synced", events.entity_synced),
        ("sync_failed", events.sync_failed),
        ("link_deleted", events.link_deleted),
    ):

        def receiver(sender: Any, _name: str = name, **payload: Any) -> None:
            calls.append((_name, sender, payload))

        signal.connect(receiver)
        receivers.append((signal, receiver))
    yield calls
    for signal, receiver in receivers:
        signal.disconnect(receiver)


async def test_each_event_is_sent_once_after_its_commit(
    runtime: Runtime, clock: FrozenClock, received: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
        await runtime.tracker.mark_failed(session, member, "crm", "boom", clock.now())
        await runtime.tracker.mark_deleted(session, member, "crm", clock.now())
        assert received == []
    ref = EntityRef("member", str(member.id), tenant.id)
    assert [(name, payload) for name, _, payload in received] == [
        ("entity_synced", {"entity": ref}),
        ("sync_failed", {"entity": ref}),
        ("link_deleted", {"entity": ref}),
    ]
    assert received[0][1].external_id == "CRM-1"


async def test_the_receiver_sees_the_committed_link(runtime: Runtime, clock: FrozenClock) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    seen: list[int] = []

    def receiver(sender: ExternalLink, **payload: Any) -> None:
        seen.append(sender.id)

    events.entity_synced.connect(receiver)
    try:
        async with runtime.unit_of_work() as session:
            await runtime.tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
        async with runtime.database.read_sessions() as session:
            committed = await session.scalar(select(ExternalLink.id))
        assert seen == [committed]
    finally:
        events.entity_synced.disconnect(receiver)


async def test_nothing_is_sent_on_rollback(
    runtime: Runtime, clock: FrozenClock, received: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)

    async def synced_then_failing() -> None:
        async with runtime.unit_of_work() as session:
            await runtime.tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
            raise RuntimeError("later failure")

    with pytest.raises(RuntimeError, match="later failure"):
        await synced_then_failing()
    assert received == []
    async with runtime.database.read_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ExternalLink)) == 0
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_synced(session, member, "CRM-2", "crm", clock.now())
    assert [name for name, _, _ in received] == ["entity_synced"]


def test_signals_are_blinker_signals() -> None:
    assert all(isinstance(s, Signal) for s in (events.entity_synced, events.sync_failed, events.link_deleted))


async def test_a_refused_claim_in_the_same_transaction_keeps_the_earlier_event(
    runtime: Runtime, clock: FrozenClock, received: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))
    tenant = await make_tenant(runtime)
    ada = await make_member(runtime, tenant)
    bob = await make_member(runtime, tenant, "bob@example.org")
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_synced(session, ada, "CRM-1", "crm", clock.now())
        with pytest.raises(ExternalIdTaken):
            await runtime.tracker.mark_synced(session, bob, "CRM-1", "crm", clock.now())
    assert [(name, payload["entity"].entity_id) for name, _, payload in received] == [("entity_synced", str(ada.id))]


async def test_a_local_deletion_stamps_every_live_link_once(
    runtime: Runtime, clock: FrozenClock, received: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    for name in ("crm", "donors"):
        runtime.providers.register(FakeSyncProvider(name))
    member = await make_member(runtime, await make_tenant(runtime))
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
        await runtime.tracker.mark_synced(session, member, "D-1", "donors", clock.now())
    received.clear()
    async with runtime.unit_of_work() as session:
        assert await runtime.tracker.entity_deleted(session, member, clock.now()) == ["crm", "donors"]
        assert received == []
    ref = EntityRef("member", str(member.id), member.tenant_id)
    assert received == [("link_deleted", "crm", {"entity": ref}), ("link_deleted", "donors", {"entity": ref})]
    async with runtime.database.read_sessions() as session:
        assert {link.deleted_at for link in await runtime.tracker.links(session, member)} == {clock.now()}
        assert not await runtime.tracker.is_synced(session, member)
    async with runtime.unit_of_work() as session:
        assert await runtime.tracker.entity_deleted(session, member, clock.now()) == []


async def test_an_entity_type_that_does_not_track_deletions_keeps_its_links(
    runtime: Runtime, clock: FrozenClock, received: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))
    runtime.tracker.registry.register_entity(Member, "member", options=TrackOptions(track_deleted=False))
    member = await make_member(runtime, await make_tenant(runtime))
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_synced(session, member, "CRM-1", "crm", clock.now())
        assert await runtime.tracker.entity_deleted(session, member, clock.now()) == []
    async with runtime.database.read_sessions() as session:
        assert await runtime.tracker.is_synced(session, member, "crm")
    assert [name for name, _, _ in received] == ["entity_synced"]
