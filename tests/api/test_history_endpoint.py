"""GET /v1/members/{id}/history, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from membersync.clock import FrozenClock
from membersync.db.pagination import MAX_ID
from membersync.identity.schemas import MappedRecord
from membersync.identity.service import apply_records
from membersync.models import AuditEntry, Conflict, Tenant
from membersync.runtime import Runtime
from tests.api.support import Auth, assert_error, assert_validation_error
from tests.factories import make_member

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ENTRY_FIELDS = {"id", "changes", "source", "operation", "operation_id", "actor", "at"}
# An explicit first cursor: without one the first page fails (test_the_first_page_needs_no_cursor).
FIRST = str(MAX_ID)


@pytest.fixture(autouse=True)
def sources(runtime: Runtime) -> None:
    runtime.tracker.registry.register_source("crm")


def _record(minutes: int = 0, **values: Any) -> MappedRecord:
    return MappedRecord(values=values, external_id="C-1", changed_at=T0 + timedelta(minutes=minutes))


async def _apply(runtime: Runtime, tenant: Tenant, record: MappedRecord) -> int:
    async with runtime.unit_of_work() as session:
        result = await apply_records(session, runtime.tracker, tenant.id, "crm", [record], runtime.clock.now())
    member_id = result.member_ids[0]
    assert member_id is not None
    return member_id


async def _member_with_a_past(runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, auth: Auth) -> int:
    """Created from the CRM, its tier changed an hour later, and an email conflict accepted through the API."""
    member_id = await _apply(runtime, auth.tenant, _record(email="ada@example.org", membership_tier="silver"))
    clock.advance(hours=1)
    await _apply(runtime, auth.tenant, _record(5, membership_tier="gold"))
    clock.advance(hours=1)
    await _apply(runtime, auth.tenant, _record(10, email="ada@new.example"))
    async with runtime.database.read_sessions() as session:
        conflict_id = await session.scalar(select(Conflict.id))
    response = await client.post(
        f"/v1/conflicts/{conflict_id}/resolve", json={"resolution": "accept_incoming"}, headers=auth.headers
    )
    assert response.status_code == 200, response.text
    return member_id


async def _page(
    client: httpx.AsyncClient, auth: Auth, member_id: int, cursor: str = FIRST, limit: int = 50
) -> dict[str, Any]:
    params: dict[str, str | int] = {"cursor": cursor, "limit": limit}
    response = await client.get(f"/v1/members/{member_id}/history", params=params, headers=auth.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _created(email: str) -> list[dict[str, Any]]:
    return [{"field": "email", "before": None, "after": email}]


async def _audit_count(runtime: Runtime) -> int:
    async with runtime.database.read_sessions() as session:
        count = await session.scalar(select(func.count()).select_from(AuditEntry))
    assert count is not None
    return count


async def test_history_is_newest_first_with_what_changed_and_who_changed_it(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, acme: Auth
) -> None:
    member_id = await _member_with_a_past(runtime, clock, client, acme)
    page = await _page(client, acme, member_id)
    items = page["items"]
    assert page["next_cursor"] is None
    assert all(set(item) == ENTRY_FIELDS for item in items)
    assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
    resolve, tier, created = items
    assert all(set(change) == {"field", "before", "after"} for item in items for change in item["changes"])
    assert resolve["changes"] == [{"field": "email", "before": "ada@example.org", "after": "ada@new.example"}]
    assert (resolve["operation"], resolve["source"], resolve["actor"]) == ("resolve", "crm", f"token:{acme.token[:10]}")
    assert tier["changes"] == [{"field": "membership_tier", "before": "silver", "after": "gold"}]
    assert (tier["operation"], tier["source"], tier["actor"]) == ("apply", "crm", "system")
    assert created["changes"] == [
        {"field": "email", "before": None, "after": "ada@example.org"},
        {"field": "membership_tier", "before": None, "after": "silver"},
    ]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert [datetime.fromisoformat(item["at"]) - start for item in items] == [
        timedelta(hours=2),
        timedelta(hours=1),
        timedelta(0),
    ]


async def test_the_cursor_walks_the_whole_history_once(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, acme: Auth
) -> None:
    member_id = await _member_with_a_past(runtime, clock, client, acme)
    everything = [item["id"] for item in (await _page(client, acme, member_id))["items"]]
    seen: list[int] = []
    cursor = FIRST
    while True:
        page = await _page(client, acme, member_id, cursor, limit=1)
        assert len(page["items"]) == 1
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == everything
    assert len(seen) == 3


async def test_an_apply_that_changes_nothing_adds_no_history(
    runtime: Runtime, clock: FrozenClock, client: httpx.AsyncClient, acme: Auth
) -> None:
    record = _record(email="ada@example.org", full_name="Ada Lovelace")
    member_id = await _apply(runtime, acme.tenant, record)
    before = (await _page(client, acme, member_id))["items"]
    clock.advance(hours=1)
    await _apply(runtime, acme.tenant, record)
    await _apply(runtime, acme.tenant, _record(email="ADA@example.org ", full_name=" Ada  Lovelace"))
    assert (await _page(client, acme, member_id))["items"] == before
    assert len(before) == 1
    assert {change["field"] for change in before[0]["changes"]} == {"email", "given_name", "family_name", "full_name"}


async def test_history_only_shows_the_members_own_entries(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    ada = await _apply(runtime, acme.tenant, _record(email="ada@example.org"))
    async with runtime.unit_of_work() as session:
        record = MappedRecord(values={"email": "grace@example.org"}, external_id="C-2", changed_at=T0)
        await apply_records(session, runtime.tracker, acme.tenant.id, "crm", [record], runtime.clock.now())
    assert [item["changes"] for item in (await _page(client, acme, ada))["items"]] == [_created("ada@example.org")]
    plain = await make_member(runtime, acme.tenant, "plain@example.org")
    assert (await _page(client, acme, plain.id))["items"] == []


async def test_another_tenants_member_is_404(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    foreign = await _apply(runtime, other.tenant, _record(email="ada@example.org"))
    count = await _audit_count(runtime)
    for member_id in (foreign, foreign + 1000):
        for params in ({}, {"cursor": FIRST}):
            response = await client.get(f"/v1/members/{member_id}/history", params=params, headers=acme.headers)
            assert_error(response, 404, "MemberNotFound")
    assert len((await _page(client, other, foreign))["items"]) == 1
    assert await _audit_count(runtime) == count


async def test_bad_input_is_422_and_no_token_is_401(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    member_id = await _apply(runtime, acme.tenant, _record(email="ada@example.org"))
    for path in ("0", "-1", "abc", str(2**63)):
        response = await client.get(f"/v1/members/{path}/history", headers=acme.headers)
        assert_validation_error(response, "path", "member_id")
    for params, name in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"cursor": "1" * 20}, "cursor")):
        response = await client.get(f"/v1/members/{member_id}/history", params=params, headers=acme.headers)
        assert_validation_error(response, "query", name)
    for cursor in ("abc", "-1", "9" * 19):
        response = await client.get(f"/v1/members/{member_id}/history", params={"cursor": cursor}, headers=acme.headers)
        assert assert_error(response, 422, "InvalidInput")["error"]["message"].startswith("cursor")
    assert_error(await client.get(f"/v1/members/{member_id}/history"), 401, "Unauthorized")


async def test_the_first_page_needs_no_cursor(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    member_id = await _apply(runtime, acme.tenant, _record(email="ada@example.org"))
    response = await client.get(f"/v1/members/{member_id}/history", headers=acme.headers)
    assert response.status_code == 200
    assert [item["changes"] for item in response.json()["items"]] == [_created("ada@example.org")]
