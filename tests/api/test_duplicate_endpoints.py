"""GET /v1/duplicates, POST /v1/duplicates/{id}/merge and /dismiss, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import insert, select

from membersync.clock import FrozenClock
from membersync.db.pagination import MAX_ID
from membersync.duplicate.service import ScanSummary, scan
from membersync.identity.schemas import MappedRecord
from membersync.identity.service import apply_records
from membersync.models import (
    AuditEntry,
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
from tests.api.support import Auth, assert_error, assert_validation_error, load_member

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ONE_MB = 1024 * 1024
TABLES = (Member, DuplicatePair, AuditEntry, Conflict, ExternalLink, ExternalProfile, Entitlement, MemberMeta)


class Pair(NamedTuple):
    id: int
    first: int
    second: int


@pytest.fixture(autouse=True)
def sources(runtime: Runtime) -> None:
    runtime.tracker.registry.register_source("crm")
    runtime.tracker.registry.register_source("patreon")


async def _apply(
    runtime: Runtime, tenant: Tenant, source: str, external_id: str, minutes: int = 0, **values: Any
) -> int:
    record = MappedRecord(values=values, external_id=external_id, changed_at=T0 + timedelta(minutes=minutes))
    async with runtime.unit_of_work() as session:
        result = await apply_records(session, runtime.tracker, tenant.id, source, [record], runtime.clock.now())
    member_id = result.member_ids[0]
    assert member_id is not None
    return member_id


async def _pair(runtime: Runtime, tenant: Tenant, name: str = "Ada Lovelace") -> Pair:
    """Two members with one name and unrelated emails (no second signal): a possible duplicate, not a match."""
    slug, family = name.lower().split()
    first = await _apply(runtime, tenant, "crm", f"C-{slug}", email=f"{slug}@one.example", full_name=name)
    second = await _apply(
        runtime,
        tenant,
        "patreon",
        f"P-{slug}",
        email=f"{family}.{slug[0]}@two.example",
        full_name=name,
        phone="+442079460018",
        membership_tier="gold",
    )
    async with runtime.database.read_sessions() as session:
        pair_id = await session.scalar(select(DuplicatePair.id).where(DuplicatePair.second_member_id == second))
    assert pair_id is not None
    return Pair(pair_id, first, second)


async def _snapshot(runtime: Runtime) -> list[list[tuple[Any, ...]]]:
    async with runtime.database.read_sessions() as session:
        return [
            [tuple(row) for row in (await session.execute(select(*model.__table__.columns).order_by(model.id)))]
            for model in TABLES
        ]


async def _rows(runtime: Runtime, model: Any, *columns: Any) -> list[tuple[Any, ...]]:
    async with runtime.database.read_sessions() as session:
        return [tuple(row) for row in await session.execute(select(*columns).order_by(model.id))]


async def _listed(client: httpx.AsyncClient, auth: Auth, **params: str | int) -> list[dict[str, Any]]:
    response = await client.get("/v1/duplicates", params=params, headers=auth.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _merge(client: httpx.AsyncClient, auth: Auth, pair_id: int, **body: Any) -> httpx.Response:
    return await client.post(f"/v1/duplicates/{pair_id}/merge", json=body, headers=auth.headers)


async def _dismiss(client: httpx.AsyncClient, auth: Auth, pair_id: int) -> httpx.Response:
    return await client.post(f"/v1/duplicates/{pair_id}/dismiss", headers=auth.headers)


async def _give_belongings(runtime: Runtime, tenant: Tenant, member_id: int, provider: str) -> None:
    """A profile, an entitlement and a meta key of `provider`, inserted directly."""
    now = runtime.clock.now()
    owner = {"tenant_id": tenant.id, "member_id": member_id}
    async with runtime.unit_of_work() as session:
        await session.execute(
            insert(ExternalProfile),
            [
                owner
                | {"provider": provider, "external_id": f"{provider}-{member_id}", "data": {}, "synced_at": now}
                | {"status": "synced", "created_at": now, "updated_at": now}
            ],
        )
        await session.execute(
            insert(Entitlement),
            [owner | {"source_provider": provider, "resource_id": "tier", "created_at": now, "updated_at": now}],
        )
        await session.execute(insert(MemberMeta), [owner | {"key": provider, "value": member_id, "updated_at": now}])


# --- listing -------------------------------------------------------------------------------------------------------


async def test_a_possible_duplicate_from_an_apply_is_listed_for_its_tenant_only(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    pair = await _pair(runtime, acme.tenant)
    [item] = await _listed(client, acme)
    assert Pair(item["id"], item["first_member_id"], item["second_member_id"]) == pair
    assert pair.first < pair.second
    assert 0.75 <= item["score"] < 0.92
    assert "no second signal" in item["reasons"][-1]
    assert (item["status"], item["resolved_by"], item["resolved_at"]) == ("pending", None, None)
    assert await _listed(client, acme, status="dismissed") == []
    assert await _listed(client, other) == []


async def test_the_list_pages_by_cursor_and_refuses_bad_queries(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    expected = [
        (await _pair(runtime, acme.tenant, name)).id for name in ("Ada Lovelace", "Grace Hopper", "Mary Shelley")
    ]
    seen: list[int] = []
    params: dict[str, str | int] = {"limit": 1}
    while True:
        page = (await client.get("/v1/duplicates", params=params, headers=acme.headers)).json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == expected
    for query, name in (({"status": "merged"}, "status"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit")):
        assert_validation_error(await client.get("/v1/duplicates", params=query, headers=acme.headers), "query", name)
    response = await client.get("/v1/duplicates", params={"cursor": "abc"}, headers=acme.headers)
    assert_error(response, 422, "InvalidInput")


# --- merge ---------------------------------------------------------------------------------------------------------


async def test_merge_moves_everything_of_the_newer_member_to_the_older(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    pair = await _pair(runtime, acme.tenant)
    await _give_belongings(runtime, acme.tenant, pair.first, "crm")
    await _give_belongings(runtime, acme.tenant, pair.second, "patreon")
    await _apply(runtime, acme.tenant, "patreon", "P-ada", 1, email="ada.x@three.example")
    response = await _merge(client, acme, pair.id)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "survivor_id": pair.first,
        "merged_id": pair.second,
        "fields_filled": ["membership_tier", "phone"],
    }
    assert_error(await client.get(f"/v1/members/{pair.second}", headers=acme.headers), 404, "MemberNotFound")
    survivor = await load_member(runtime, pair.first)
    assert (survivor.email, survivor.phone, survivor.tier) == ("ada@one.example", "+442079460018", "gold")
    owners = {pair.first}
    assert {row[0] for row in await _rows(runtime, ExternalProfile, ExternalProfile.member_id)} == owners
    assert sorted(await _rows(runtime, Entitlement, Entitlement.member_id, Entitlement.source_provider)) == [
        (pair.first, "crm"),
        (pair.first, "patreon"),
    ]
    assert await _rows(runtime, MemberMeta, MemberMeta.key, MemberMeta.value) == [
        ("crm", pair.first),
        ("patreon", pair.second),
    ]
    links = await _rows(runtime, ExternalLink, ExternalLink.source, ExternalLink.external_id, ExternalLink.entity_id)
    assert links == [("crm", "C-ada", str(pair.first)), ("patreon", "P-ada", str(pair.first))]
    assert await _rows(runtime, Conflict, Conflict.member_id, Conflict.incoming_value, Conflict.status) == [
        (pair.first, "ada.x@three.example", "pending")
    ]
    assert {row[0] for row in await _rows(runtime, AuditEntry, AuditEntry.member_id)} == owners
    assert await _listed(client, acme) == []


async def test_merge_audits_the_merged_member_and_the_filled_fields(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, acme: Auth
) -> None:
    pair = await _pair(runtime, acme.tenant)
    clock.advance(hours=1)
    assert (await _merge(client, acme, pair.id)).status_code == 200
    params = {"cursor": str(MAX_ID)}  # without a cursor the first page fails: see test_history_endpoint.py
    response = await client.get(f"/v1/members/{pair.first}/history", params=params, headers=acme.headers)
    history = response.json()["items"]
    [merge] = [entry for entry in history if entry["operation"] == "merge"]
    changes = {change["field"]: change for change in merge["changes"]}
    merged = changes.pop("merged_member")
    assert merged["before"] == {"member_id": pair.second, "email": "lovelace.a@two.example", "name": "Ada Lovelace"}
    assert merged["after"] == {"member_id": pair.first}
    assert (merge["actor"], merge["operation_id"], merge["source"]) == (f"token:{acme.token[:10]}", pair.id, "local")
    assert datetime.fromisoformat(merge["at"]) == runtime.clock.now()
    assert {(change["field"], change["before"], change["after"]) for change in changes.values()} == {
        ("phone", None, "+442079460018"),
        ("membership_tier", None, "gold"),
    }
    emails = {change["after"] for entry in history for change in entry["changes"] if change["field"] == "email"}
    assert emails == {"ada@one.example", "lovelace.a@two.example"}


async def test_merge_keeps_the_named_survivor(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    pair = await _pair(runtime, acme.tenant)
    await _apply(runtime, acme.tenant, "crm", "C-ada", 1, time_zone="Europe/London")
    response = await _merge(client, acme, pair.id, survivor_id=pair.second)
    assert response.status_code == 200, response.text
    assert response.json() == {"survivor_id": pair.second, "merged_id": pair.first, "fields_filled": ["time_zone"]}
    survivor = await load_member(runtime, pair.second)
    assert (survivor.email, survivor.time_zone, survivor.phone) == (
        "lovelace.a@two.example",
        "Europe/London",
        "+442079460018",
    )
    assert await _rows(runtime, Member, Member.id) == [(pair.second,)]


async def test_a_survivor_outside_the_pair_is_422(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    pair = await _pair(runtime, acme.tenant)
    third = await _apply(runtime, acme.tenant, "crm", "C-3", email="third@example.org")
    before = await _snapshot(runtime)
    for survivor_id in (third, MAX_ID):
        response = await _merge(client, acme, pair.id, survivor_id=survivor_id)
        message = assert_error(response, 422, "InvalidInput")["error"]["message"]
        assert message == f"survivor_id: must be {pair.first} or {pair.second}"
    assert await _snapshot(runtime) == before


async def test_a_pair_found_by_the_scan_can_be_merged(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    now = runtime.clock.now()
    people = [("Jonathan", "Smith", "jsmith@one.example"), ("Jonathon", "Smyth", "jon@two.example")]
    rows = [
        {"tenant_id": acme.tenant.id, "email": email, "given_name": given, "family_name": family}
        | {"name": f"{given} {family}", "phone": "+442079460018", "status": "active", "attributes": {}}
        | {"created_at": now, "updated_at": now}
        for given, family, email in people
    ]
    async with runtime.unit_of_work() as session:
        await session.execute(insert(Member), rows)
        summary = await scan(session, acme.tenant.id, now)
    assert summary == ScanSummary(members=2, pairs=1, new_pairs=1)
    [item] = await _listed(client, acme)
    assert "phone matches" in item["reasons"]
    assert (await _merge(client, acme, item["id"])).json()["survivor_id"] == item["first_member_id"]
    assert await _rows(runtime, Member, Member.email) == [("jsmith@one.example",)]


# --- dismiss -------------------------------------------------------------------------------------------------------


async def test_a_dismissed_pair_is_kept_and_never_raised_again(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, acme: Auth
) -> None:
    pair = await _pair(runtime, acme.tenant)
    clock.advance(minutes=5)
    response = await _dismiss(client, acme, pair.id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"], body["resolved_by"]) == (pair.id, "dismissed", f"token:{acme.token[:10]}")
    assert datetime.fromisoformat(body["resolved_at"]) == runtime.clock.now()
    assert await _listed(client, acme) == []
    assert [item["id"] for item in await _listed(client, acme, status="dismissed")] == [pair.id]
    async with runtime.unit_of_work() as session:
        assert await scan(session, acme.tenant.id, runtime.clock.now()) == ScanSummary(members=2, pairs=1, new_pairs=0)
    await _apply(runtime, acme.tenant, "patreon", "P-ada", 1, membership_tier="silver")
    assert await _listed(client, acme) == []
    assert await _rows(runtime, DuplicatePair, DuplicatePair.id, DuplicatePair.status) == [(pair.id, "dismissed")]
    assert len(await _rows(runtime, Member, Member.id)) == 2


async def test_dismissing_twice_or_merging_a_dismissed_pair_is_409(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    pair = await _pair(runtime, acme.tenant)
    assert (await _dismiss(client, acme, pair.id)).status_code == 200
    before = await _snapshot(runtime)
    for response in (await _dismiss(client, acme, pair.id), await _merge(client, acme, pair.id)):
        assert "already dismissed" in assert_error(response, 409, "Conflict")["error"]["message"]
    assert await _snapshot(runtime) == before


async def test_merging_twice_is_409(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    pair = await _pair(runtime, acme.tenant)
    assert (await _merge(client, acme, pair.id)).status_code == 200
    assert_error(await _merge(client, acme, pair.id), 409, "Conflict")
    assert_error(await _dismiss(client, acme, pair.id), 409, "Conflict")


async def test_merge_needs_no_body_for_the_default_survivor(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    pair = await _pair(runtime, acme.tenant)
    response = await client.post(f"/v1/duplicates/{pair.id}/merge", headers=acme.headers)
    assert response.status_code == 200, response.text


# --- refusals ------------------------------------------------------------------------------------------------------


async def test_another_tenants_or_an_unknown_pair_is_404(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    foreign = await _pair(runtime, other.tenant)
    before = await _snapshot(runtime)
    for pair_id in (foreign.id, foreign.id + 1000):
        assert_error(await _merge(client, acme, pair_id), 404, "NotFound")
        assert_error(await _merge(client, acme, pair_id, survivor_id=foreign.second), 404, "NotFound")
        assert_error(await _dismiss(client, acme, pair_id), 404, "NotFound")
    assert await _snapshot(runtime) == before


BAD_PATHS = ("0", "-1", "abc", "1.5", str(2**63))
BAD_BODIES: list[tuple[bytes, int]] = [
    (b'{"survivor_id": 0}', 422),
    (b'{"survivor_id": -5}', 422),
    (b'{"survivor_id": "abc"}', 422),
    (b'{"survivor_id": 9223372036854775808}', 422),
    (b'{"survivor_id": 1.5}', 422),
    (b'{"extra": 1}', 422),
    (b"[]", 422),
    (b"not json", 422),
    (json.dumps({"survivor_id": 1, "x": "y" * ONE_MB}).encode(), 413),
]


async def test_bad_ids_and_bodies_are_4xx_and_change_nothing(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    pair = await _pair(runtime, acme.tenant)
    before = await _snapshot(runtime)
    for path in BAD_PATHS:
        for action in ("merge", "dismiss"):
            response = await client.post(f"/v1/duplicates/{path}/{action}", json={}, headers=acme.headers)
            assert_validation_error(response, "path", "pair_id")
    headers = acme.headers | {"Content-Type": "application/json"}
    for content, status in BAD_BODIES:
        response = await client.post(f"/v1/duplicates/{pair.id}/merge", content=content, headers=headers)
        assert response.status_code == status, (content[:40], response.text)
        assert response.json()
    for action in ("merge", "dismiss"):
        assert_error(await client.post(f"/v1/duplicates/{pair.id}/{action}", json={}), 401, "Unauthorized")
    assert_error(await client.get("/v1/duplicates"), 401, "Unauthorized")
    assert await _snapshot(runtime) == before
