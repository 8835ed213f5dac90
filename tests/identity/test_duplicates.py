"""The duplicate service on SQLite and PostgreSQL: scanning a tenant for possible duplicates, and merging a pair."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select

from membersync.duplicate.service import MergeSummary, ScanSummary, merge, scan
from membersync.errors import Conflict as ConflictError
from membersync.errors import InvalidInput, NotFound
from membersync.identity.schemas import MappedRecord
from membersync.identity.service import apply_records
from membersync.models import (
    Conflict,
    DuplicatePair,
    Entitlement,
    ExternalLink,
    ExternalProfile,
    Member,
    MemberMeta,
    Tenant,
)
from membersync.runtime import Runtime
from membersync.tracker.entities import EntityRef
from tests.factories import make_tenant

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PHONES = ("+442079460011", "+442079460012", "+442079460013", "+442079460014")
# (given, family, phone): three near-duplicates with typos sharing a phone, a household sharing the first phone,
# and people who resemble nobody.
PEOPLE = [
    ("Jonathan", "Smith", PHONES[0]),
    ("Margaret", "Hamilton", PHONES[1]),
    ("Katherine", "Johnson", PHONES[2]),
    ("Alan", "Turing", PHONES[3]),
    ("Jonathon", "Smith", PHONES[0]),
    ("Margret", "Hamilton", PHONES[1]),
    ("Catherine", "Johnson", PHONES[2]),
    ("Mary", "Smith", PHONES[0]),
    ("Grace", "Hopper", None),
]
PLANTED = {(0, 4), (1, 5), (2, 6)}


async def tenant(runtime: Runtime) -> Tenant:
    runtime.tracker.registry.register_source("crm")
    runtime.tracker.registry.register_source("patreon")
    return await make_tenant(runtime)


async def _plant(runtime: Runtime, tenant: Tenant) -> list[int]:
    """PEOPLE as members of `tenant`, written directly (an apply would match them by phone); their ids."""
    now = runtime.clock.now()
    rows = [
        {"tenant_id": tenant.id, "email": f"{tenant.slug}{index}@example.org", "given_name": given}
        | {"family_name": family, "name": f"{given} {family}", "phone": phone, "status": "active", "attributes": {}}
        | {"created_at": now, "updated_at": now}
        for index, (given, family, phone) in enumerate(PEOPLE)
    ]
    async with runtime.unit_of_work() as session:
        await session.execute(insert(Member), rows)
        ids = await session.scalars(select(Member.id).where(Member.tenant_id == tenant.id).order_by(Member.id))
        return list(ids)


async def _scan(runtime: Runtime, tenant: Tenant) -> ScanSummary:
    async with runtime.unit_of_work() as session:
        return await scan(session, tenant.id, runtime.clock.now())


async def _pairs(runtime: Runtime) -> list[tuple[Any, ...]]:
    async with runtime.database.read_sessions() as session:
        columns = (DuplicatePair.tenant_id, DuplicatePair.first_member_id, DuplicatePair.second_member_id)
        return [tuple(row) for row in await session.execute(select(*columns).order_by(DuplicatePair.id))]


async def _apply(runtime: Runtime, tenant: Tenant, source: str, external_id: str, **values: Any) -> int:
    record = MappedRecord(values=values, external_id=external_id, changed_at=T0)
    async with runtime.unit_of_work() as session:
        result = await apply_records(session, runtime.tracker, tenant.id, source, [record], runtime.clock.now())
    member_id = result.member_ids[0]
    assert member_id is not None
    return member_id


async def _ada_twice(runtime: Runtime, tenant: Tenant, second_source: str = "patreon") -> tuple[int, int, int]:
    """Two members named Ada Lovelace with unrelated emails, and the pair the apply recorded: their ids."""
    first = await _apply(runtime, tenant, "crm", "C-1", email="ada@one.example", full_name="Ada Lovelace")
    second = await _apply(
        runtime, tenant, second_source, "X-2", email="lovelace.a@two.example", full_name="Ada Lovelace"
    )
    async with runtime.database.read_sessions() as session:
        pair_id = await session.scalar(select(DuplicatePair.id).where(DuplicatePair.second_member_id == second))
    assert pair_id is not None
    return first, second, pair_id


async def _merge(runtime: Runtime, tenant: Tenant, pair_id: int, **kwargs: Any) -> MergeSummary:
    async with runtime.unit_of_work() as session:
        return await merge(session, tenant.id, pair_id, runtime.clock.now(), actor="test", **kwargs)


async def _rows(runtime: Runtime, model: Any, *columns: Any) -> list[tuple[Any, ...]]:
    async with runtime.database.read_sessions() as session:
        return [tuple(row) for row in await session.execute(select(*columns).order_by(model.id))]


async def _belongings(runtime: Runtime, tenant: Tenant, member_id: int, provider: str, resource: str) -> None:
    now = runtime.clock.now()
    owner = {"tenant_id": tenant.id, "member_id": member_id}
    async with runtime.unit_of_work() as session:
        profile = {"provider": provider, "external_id": f"{provider}-{member_id}", "data": {"of": member_id}}
        times = {"created_at": now, "updated_at": now}
        await session.execute(insert(ExternalProfile), [owner | profile | times | {"status": "synced"}])
        await session.execute(
            insert(Entitlement), [owner | times | {"source_provider": provider, "resource_id": resource}]
        )
        await session.execute(insert(MemberMeta), [owner | {"key": resource, "value": member_id, "updated_at": now}])


# --- scan ----------------------------------------------------------------------------------------------------------


async def test_scan_finds_planted_near_duplicates_once_each(runtime: Runtime, tenant: Tenant) -> None:
    ids = await _plant(runtime, tenant)
    assert await _scan(runtime, tenant) == ScanSummary(members=len(PEOPLE), pairs=3, new_pairs=3)
    expected = {(tenant.id, ids[first], ids[second]) for first, second in PLANTED}
    assert set(await _pairs(runtime)) == expected
    async with runtime.database.read_sessions() as session:
        pairs = list(await session.scalars(select(DuplicatePair)))
    assert all("phone matches" in pair.reasons and pair.score >= 0.75 for pair in pairs)
    assert {pair.status for pair in pairs} == {"pending"}


async def test_a_second_scan_records_nothing_new(runtime: Runtime, tenant: Tenant) -> None:
    await _plant(runtime, tenant)
    await _scan(runtime, tenant)
    before = await _pairs(runtime)
    assert await _scan(runtime, tenant) == ScanSummary(members=len(PEOPLE), pairs=3, new_pairs=0)
    assert await _pairs(runtime) == before


async def test_scan_never_pairs_members_of_different_tenants(runtime: Runtime, tenant: Tenant) -> None:
    other = await make_tenant(runtime, "other")
    mine, theirs = await _plant(runtime, tenant), await _plant(runtime, other)
    assert (await _scan(runtime, tenant)).new_pairs == 3
    assert {row[0] for row in await _pairs(runtime)} == {tenant.id}
    assert (await _scan(runtime, other)).new_pairs == 3
    for tenant_id, first, second in await _pairs(runtime):
        owned = set(mine if tenant_id == tenant.id else theirs)
        assert {first, second} <= owned


async def test_scan_of_an_empty_tenant(runtime: Runtime, tenant: Tenant) -> None:
    assert await _scan(runtime, tenant) == ScanSummary(members=0, pairs=0, new_pairs=0)


async def test_scan_reports_progress(runtime: Runtime, tenant: Tenant) -> None:
    await _plant(runtime, tenant)
    stages: list[tuple[str, int]] = []
    async with runtime.unit_of_work() as session:
        await scan(session, tenant.id, runtime.clock.now(), progress=lambda stage, n: stages.append((stage, n)))
    assert stages == [("loaded", len(PEOPLE)), ("compared", len(PEOPLE))]


# --- merge ---------------------------------------------------------------------------------------------------------


async def test_where_both_have_one_of_a_kind_the_survivors_stays(runtime: Runtime, tenant: Tenant) -> None:
    first, second, pair_id = await _ada_twice(runtime, tenant)
    await _belongings(runtime, tenant, first, "crm", "gold")
    await _belongings(runtime, tenant, second, "crm", "gold")
    await _belongings(runtime, tenant, second, "patreon", "silver")
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_synced(
            session, EntityRef("member", str(second), tenant.id), "P-2", "patreon", runtime.clock.now()
        )
    assert await _merge(runtime, tenant, pair_id) == MergeSummary(first, second, ())
    profiles = await _rows(
        runtime, ExternalProfile, ExternalProfile.member_id, ExternalProfile.provider, ExternalProfile.data
    )
    assert sorted(profiles) == [(first, "crm", {"of": first}), (first, "patreon", {"of": second})]
    entitlements = await _rows(
        runtime, Entitlement, Entitlement.member_id, Entitlement.source_provider, Entitlement.resource_id
    )
    assert sorted(entitlements) == [(first, "crm", "gold"), (first, "patreon", "silver")]
    meta = await _rows(runtime, MemberMeta, MemberMeta.member_id, MemberMeta.key, MemberMeta.value)
    assert sorted(meta) == [(first, "gold", first), (first, "silver", second)]
    links = await _rows(runtime, ExternalLink, ExternalLink.entity_id, ExternalLink.source, ExternalLink.external_id)
    assert sorted(links) == [(str(first), "crm", "C-1"), (str(first), "patreon", "P-2")]


async def test_pending_conflicts_on_the_same_field_keep_the_survivors(runtime: Runtime, tenant: Tenant) -> None:
    first, _, pair_id = await _ada_twice(runtime, tenant)
    later = datetime(2026, 3, 2, tzinfo=UTC)
    for source, external_id, email in (("crm", "C-1", "ada@three.example"), ("patreon", "X-2", "ada@four.example")):
        record = MappedRecord(values={"email": email}, external_id=external_id, changed_at=later)
        async with runtime.unit_of_work() as session:
            await apply_records(session, runtime.tracker, tenant.id, source, [record], runtime.clock.now())
    await _merge(runtime, tenant, pair_id)
    conflicts = await _rows(runtime, Conflict, Conflict.member_id, Conflict.incoming_value, Conflict.status)
    assert conflicts == [(first, "ada@three.example", "pending"), (first, "ada@four.example", "superseded")]


async def test_merge_fills_only_empty_fields_and_keeps_the_survivors_email(runtime: Runtime, tenant: Tenant) -> None:
    first, _, pair_id = await _ada_twice(runtime, tenant)
    await _apply(runtime, tenant, "crm", "C-1", membership_tier="gold", time_zone="Europe/London")
    await _apply(runtime, tenant, "patreon", "X-2", membership_tier="silver", phone="+442079460018")
    summary = await _merge(runtime, tenant, pair_id, survivor_id=first)
    assert summary.fields_filled == ("phone",)
    [(email, tier, zone, phone, name_key)] = await _rows(
        runtime, Member, Member.email, Member.tier, Member.time_zone, Member.phone, Member.name_key
    )
    assert (email, tier, zone, phone) == ("ada@one.example", "gold", "Europe/London", "+442079460018")
    assert name_key is not None


async def test_merge_forgets_the_fingerprints_of_the_survivors_links(runtime: Runtime, tenant: Tenant) -> None:
    """The survivor holds values from both members now: each source's record must be merged again."""
    _, _, pair_id = await _ada_twice(runtime, tenant)
    assert all(fingerprint for (fingerprint,) in await _rows(runtime, ExternalLink, ExternalLink.fingerprint))
    await _merge(runtime, tenant, pair_id)
    assert await _rows(runtime, ExternalLink, ExternalLink.fingerprint) == [(None,), (None,)]


async def test_merge_leaves_no_pair_pointing_at_the_merged_member(runtime: Runtime, tenant: Tenant) -> None:
    first, _, pair_id = await _ada_twice(runtime, tenant)
    third = await _apply(runtime, tenant, "crm", "C-3", email="ada.l@three.example", full_name="Ada Lovelace")
    assert (await _scan(runtime, tenant)).pairs == 3
    await _merge(runtime, tenant, pair_id)
    assert await _pairs(runtime) == [(tenant.id, first, None), (tenant.id, first, third)]


async def test_merge_refuses_unknown_foreign_and_outside_ids(runtime: Runtime, tenant: Tenant) -> None:
    other = await make_tenant(runtime, "other")
    first, second, pair_id = await _ada_twice(runtime, tenant)
    with pytest.raises(NotFound):
        await _merge(runtime, other, pair_id)
    with pytest.raises(NotFound):
        await _merge(runtime, tenant, pair_id + 1000)
    with pytest.raises(InvalidInput, match="survivor_id"):
        await _merge(runtime, tenant, pair_id, survivor_id=second + 1000)
    assert await _rows(runtime, Member, Member.id) == [(first,), (second,)]
    assert len(await _pairs(runtime)) == 1


async def test_merging_a_pair_twice_is_a_conflict(runtime: Runtime, tenant: Tenant) -> None:
    _, _, pair_id = await _ada_twice(runtime, tenant)
    await _merge(runtime, tenant, pair_id)
    with pytest.raises(ConflictError):
        await _merge(runtime, tenant, pair_id)


async def test_members_linked_in_the_same_source_are_not_merged(runtime: Runtime, tenant: Tenant) -> None:
    first, second, pair_id = await _ada_twice(runtime, tenant, second_source="crm")
    with pytest.raises(ConflictError, match="both linked in crm"):
        await _merge(runtime, tenant, pair_id)
    assert sorted(await _rows(runtime, Member, Member.id)) == sorted([(first,), (second,)])
    assert len(await _pairs(runtime)) == 1
