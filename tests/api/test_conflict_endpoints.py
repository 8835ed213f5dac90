"""GET /v1/conflicts and POST /v1/conflicts/{id}/resolve, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from membersync.db.pagination import MAX_ID
from membersync.identity.policy import MergePolicies
from membersync.identity.settings import IdentityOptions
from membersync.models import AuditEntry, Conflict, Member, Tenant
from membersync.runtime import Runtime
from tests.api.support import Auth, assert_error, assert_validation_error, load_member
from tests.factories import RECORDS_T0 as T0
from tests.factories import apply_page as _apply
from tests.factories import mapped_record as _record

ONE_MB = 1024 * 1024
PHONE_MANUAL = IdentityOptions(policies=MergePolicies.from_dict({"fields": {"phone": "manual"}}))


@pytest.fixture(autouse=True)
def sources(runtime: Runtime) -> None:
    runtime.tracker.registry.register_source("crm")
    runtime.tracker.registry.register_source("patreon")


async def _conflicted(
    runtime: Runtime, tenant: Tenant, name: str = "ada", source: str = "crm", **options: Any
) -> tuple[int, int]:
    """A member whose source changed its email (a manual field): the member's id and the pending conflict's id."""
    external_id = f"{source}-{name}"
    created = await _apply(runtime, tenant, [_record(external_id, email=f"{name}@example.org")], source)
    changed = _record(external_id, minutes=1, email=f"{name}@new.example")
    assert (await _apply(runtime, tenant, [changed], source)).conflicted == 1
    member_id = created.member_ids[0]
    assert member_id is not None
    async with runtime.database.read_sessions() as session:
        conflict_id = await session.scalar(select(Conflict.id).where(Conflict.member_id == member_id))
    assert conflict_id is not None
    return member_id, conflict_id


async def _snapshot(runtime: Runtime) -> list[list[tuple[Any, ...]]]:
    """Every member, conflict and audit row of every tenant, for before/after comparisons."""
    async with runtime.database.read_sessions() as session:
        return [
            [tuple(row) for row in (await session.execute(select(*model.__table__.columns).order_by(model.id)))]
            for model in (Member, Conflict, AuditEntry)
        ]


async def _listed(client: httpx.AsyncClient, auth: Auth, **params: str | int) -> list[dict[str, Any]]:
    response = await client.get("/v1/conflicts", params=params, headers=auth.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _resolve(client: httpx.AsyncClient, auth: Auth, conflict_id: int, **body: Any) -> httpx.Response:
    return await client.post(f"/v1/conflicts/{conflict_id}/resolve", json=body, headers=auth.headers)


async def _history(client: httpx.AsyncClient, auth: Auth, member_id: int) -> list[dict[str, Any]]:
    # An explicit cursor: without one the first page fails (see test_history_endpoint.py).
    params = {"cursor": str(MAX_ID)}
    response = await client.get(f"/v1/members/{member_id}/history", params=params, headers=auth.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- listing -------------------------------------------------------------------------------------------------------


async def test_the_list_shows_the_pending_conflicts_of_the_callers_tenant(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    member_id, conflict_id = await _conflicted(runtime, acme.tenant)
    await _conflicted(runtime, other.tenant, "grace")
    [item] = await _listed(client, acme)
    assert item["id"] == conflict_id
    assert (item["member_id"], item["field"], item["source"], item["status"]) == (member_id, "email", "crm", "pending")
    assert (item["current_value"], item["incoming_value"]) == ("ada@example.org", "ada@new.example")
    assert item["reason"] == "policy manual: a person decides"
    assert (item["resolution"], item["resolved_value"], item["resolved_by"], item["resolved_at"]) == (None,) * 4
    assert datetime.fromisoformat(item["incoming_changed_at"]) == T0 + timedelta(minutes=1)
    assert [item["incoming_value"] for item in await _listed(client, other)] == ["grace@new.example"]


async def test_a_foreign_tenant_sees_nothing(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    member_id, _ = await _conflicted(runtime, acme.tenant)
    assert await _listed(client, other) == []
    assert await _listed(client, other, member_id=member_id) == []
    assert await _listed(client, other, status="resolved") == []


async def test_filters_by_status_member_field_and_source(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    await _apply(runtime, acme.tenant, [_record("C-1", email="ada@example.org", phone="+442079460018")])
    for changed in ({"phone": "+442079460019"}, {"email": "ada@new.example"}):
        assert (await _apply(runtime, acme.tenant, [_record("C-1", 1, **changed)], options=PHONE_MANUAL)).conflicted
    grace_id, grace_conflict = await _conflicted(runtime, acme.tenant, "grace", source="patreon")
    [ada_id] = {item["member_id"] for item in await _listed(client, acme, source="crm")}
    assert len(await _listed(client, acme)) == 3
    assert {item["field"] for item in await _listed(client, acme, member_id=ada_id)} == {"email", "phone"}
    assert [item["incoming_value"] for item in await _listed(client, acme, field="phone")] == ["+442079460019"]
    assert [item["id"] for item in await _listed(client, acme, source="patreon")] == [grace_conflict]
    assert await _listed(client, acme, source="patreon", member_id=ada_id) == []
    assert await _listed(client, acme, status="resolved") == []
    assert (await _resolve(client, acme, grace_conflict, resolution="keep_current")).status_code == 200
    assert [item["member_id"] for item in await _listed(client, acme, status="resolved")] == [grace_id]
    assert await _listed(client, acme, status="superseded") == []
    assert {item["member_id"] for item in await _listed(client, acme)} == {ada_id}


async def test_the_cursor_walks_every_conflict_once(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    expected = [(await _conflicted(runtime, acme.tenant, name))[1] for name in ("ada", "grace", "mary")]
    seen: list[int] = []
    params: dict[str, str | int] = {"limit": 1}
    while True:
        response = await client.get("/v1/conflicts", params=params, headers=acme.headers)
        page = response.json()
        assert len(page["items"]) == 1
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == expected


BAD_QUERIES: list[tuple[dict[str, str | int], str]] = [
    ({"status": "exploded"}, "status"),
    ({"limit": 0}, "limit"),
    ({"limit": 501}, "limit"),
    ({"member_id": 0}, "member_id"),
    ({"member_id": "abc"}, "member_id"),
    ({"member_id": 2**63}, "member_id"),
    ({"field": ""}, "field"),
    ({"field": "f" * 256}, "field"),
    ({"source": "Bad Source"}, "source"),
    ({"cursor": "1" * 20}, "cursor"),
]


async def test_a_bad_list_query_is_422_naming_the_parameter(client: httpx.AsyncClient, acme: Auth) -> None:
    for params, field in BAD_QUERIES:
        response = await client.get("/v1/conflicts", params=params, headers=acme.headers)
        assert_validation_error(response, "query", field)
    for cursor in ("abc", "-1", "1.5", "9" * 19):
        response = await client.get("/v1/conflicts", params={"cursor": cursor}, headers=acme.headers)
        assert assert_error(response, 422, "InvalidInput")["error"]["message"].startswith("cursor"), cursor


async def test_a_page_raising_two_conflicts_lists_both(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    await _apply(runtime, acme.tenant, [_record(f"crm-{name}", email=f"{name}@example.org") for name in ("x", "y")])
    changed = [_record(f"crm-{name}", 1, email=f"{name}@new.example") for name in ("x", "y")]
    assert (await _apply(runtime, acme.tenant, changed)).conflicted == 2
    assert [item["incoming_value"] for item in await _listed(client, acme)] == ["x@new.example", "y@new.example"]


# --- resolving -----------------------------------------------------------------------------------------------------


async def test_keep_current_leaves_the_member_as_it_was(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    members, _, audit = await _snapshot(runtime)
    response = await _resolve(client, acme, conflict_id, resolution="keep_current")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["resolution"], body["resolved_value"]) == (
        "resolved",
        "keep_current",
        "ada@example.org",
    )
    assert body["resolved_by"] == f"token:{acme.token[:10]}"
    assert datetime.fromisoformat(body["resolved_at"]) == runtime.clock.now()
    after_members, _, after_audit = await _snapshot(runtime)
    assert after_audit == audit
    assert [row[:5] for row in after_members] == [row[:5] for row in members]
    assert await _listed(client, acme) == []


async def test_accept_incoming_changes_the_member_and_is_audited(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    member_id, conflict_id = await _conflicted(runtime, acme.tenant)
    response = await _resolve(client, acme, conflict_id, resolution="accept_incoming")
    assert response.status_code == 200, response.text
    assert (response.json()["resolution"], response.json()["resolved_value"]) == ("accept_incoming", "ada@new.example")
    assert (await load_member(runtime, member_id)).email == "ada@new.example"
    newest = (await _history(client, acme, member_id))[0]
    assert newest["changes"] == [{"field": "email", "before": "ada@example.org", "after": "ada@new.example"}]
    assert (newest["operation"], newest["operation_id"], newest["source"]) == ("resolve", conflict_id, "crm")
    assert newest["actor"] == f"token:{acme.token[:10]}"


async def test_the_same_source_value_again_after_accepting_is_no_change(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    assert (await _resolve(client, acme, conflict_id, resolution="accept_incoming")).status_code == 200
    again = await _apply(runtime, acme.tenant, [_record("crm-ada", minutes=1, email="ada@new.example")])
    assert (again.unchanged, again.conflicted) == (1, 0)
    assert await _listed(client, acme) == []


async def test_a_kept_value_is_not_asked_about_again_for_the_same_incoming_value(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    assert (await _resolve(client, acme, conflict_id, resolution="keep_current")).status_code == 200
    again = await _apply(runtime, acme.tenant, [_record("crm-ada", minutes=1, email="ada@new.example")])
    assert again.conflicted == 0
    assert await _listed(client, acme) == []


async def test_set_value_normalises_the_value_and_is_audited_as_local(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    member_id, conflict_id = await _conflicted(runtime, acme.tenant)
    response = await _resolve(client, acme, conflict_id, resolution="set_value", value=" NEW@Example.org ")
    assert response.status_code == 200, response.text
    assert (response.json()["resolution"], response.json()["resolved_value"]) == ("set_value", "new@example.org")
    assert (await load_member(runtime, member_id)).email == "new@example.org"
    newest = (await _history(client, acme, member_id))[0]
    assert newest["changes"] == [{"field": "email", "before": "ada@example.org", "after": "new@example.org"}]
    assert (newest["source"], newest["operation"]) == ("local", "resolve")


async def test_set_value_with_a_bad_or_missing_value_is_422_naming_value(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    before = await _snapshot(runtime)
    for value in ("not an email", 42, ["ada@example.org"], {"email": "ada@example.org"}, "", "   ", True):
        response = await _resolve(client, acme, conflict_id, resolution="set_value", value=value)
        assert assert_error(response, 422, "InvalidInput")["error"]["message"].startswith("value:"), value
    for body in ({"resolution": "set_value", "value": None}, {"resolution": "set_value"}):
        response = await client.post(f"/v1/conflicts/{conflict_id}/resolve", json=body, headers=acme.headers)
        assert (
            assert_error(response, 422, "InvalidInput")["error"]["message"]
            == "value: required with resolution set_value"
        )
    assert await _snapshot(runtime) == before


async def test_an_email_held_by_another_member_cannot_be_taken(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    await _apply(runtime, acme.tenant, [_record("crm-holder", email="ada@new.example")])
    before = await _snapshot(runtime)
    for body in ({"resolution": "accept_incoming"}, {"resolution": "set_value", "value": "ADA@new.example"}):
        response = await client.post(f"/v1/conflicts/{conflict_id}/resolve", json=body, headers=acme.headers)
        assert "belongs to member" in assert_error(response, 409, "Conflict")["error"]["message"]
    assert await _snapshot(runtime) == before


@pytest.mark.parametrize("second", ["keep_current", "accept_incoming"])
async def test_resolving_twice_is_409(runtime: Runtime, client: httpx.AsyncClient, acme: Auth, second: str) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    assert (await _resolve(client, acme, conflict_id, resolution="keep_current")).status_code == 200
    before = await _snapshot(runtime)
    response = await _resolve(client, acme, conflict_id, resolution=second)
    assert "already resolved" in assert_error(response, 409, "Conflict")["error"]["message"]
    assert await _snapshot(runtime) == before


async def test_an_unknown_or_foreign_conflict_is_404(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    _, foreign = await _conflicted(runtime, other.tenant)
    before = await _snapshot(runtime)
    for conflict_id in (foreign, foreign + 1000):
        response = await _resolve(client, acme, conflict_id, resolution="accept_incoming")
        assert_error(response, 404, "NotFound")
    assert await _snapshot(runtime) == before


BAD_RESOLVES: list[tuple[str, bytes, int]] = [
    ("0", b'{"resolution": "keep_current"}', 422),
    (str(2**63), b'{"resolution": "keep_current"}', 422),
    ("-1", b'{"resolution": "keep_current"}', 422),
    ("abc", b'{"resolution": "keep_current"}', 422),
    ("1.5", b'{"resolution": "keep_current"}', 422),
    ("{id}", b'{"resolution": "maybe"}', 422),
    ("{id}", b'{"resolution": "KEEP_CURRENT"}', 422),
    ("{id}", b'{"resolution": "keep_current", "extra": 1}', 422),
    ("{id}", b'{"resolution": null}', 422),
    ("{id}", b"{}", 422),
    ("{id}", b"[]", 422),
    ("{id}", b"", 422),
    ("{id}", b"not json", 422),
    ("{id}", b"\xff\xfe", 422),
    ("{id}", b"{" * 100_000, 422),
    ("{id}", json.dumps({"resolution": "set_value", "value": "x" * ONE_MB}).encode(), 413),
]


async def test_bad_input_is_a_json_4xx_and_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    before = await _snapshot(runtime)
    headers = acme.headers | {"Content-Type": "application/json"}
    for path, content, status in BAD_RESOLVES:
        url = f"/v1/conflicts/{path.format(id=conflict_id)}/resolve"
        response = await client.post(url, content=content, headers=headers)
        assert response.status_code == status, (path, content[:40], response.text)
        assert response.json(), (path, content[:40])
    assert await _snapshot(runtime) == before


async def test_resolving_needs_a_valid_token(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    _, conflict_id = await _conflicted(runtime, acme.tenant)
    before = await _snapshot(runtime)
    for headers in ({}, {"Authorization": "Bearer ms_not_a_token"}, {"Authorization": "Basic eDp5"}):
        body = {"resolution": "accept_incoming"}
        response = await client.post(f"/v1/conflicts/{conflict_id}/resolve", json=body, headers=headers)
        assert_error(response, 401, "Unauthorized")
        assert_error(await client.get("/v1/conflicts", headers=headers), 401, "Unauthorized")
    assert await _snapshot(runtime) == before
