"""The members API: create-or-update by email, read with records, cursor listing, bad input, tenant isolation."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from membersync.clock import FrozenClock
from membersync.freshness.service import SyncOutcome, SyncRequest, sync_member
from membersync.models import Member
from membersync.provider.context import SyncContext
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from tests.api.support import (
    MEMBER_FIELDS,
    Auth,
    assert_error,
    assert_validation_error,
    list_all,
    load_member,
    stored_members,
    when,
)
from tests.factories import make_member, make_members

ONE_MB = 1024 * 1024


async def _create(client: httpx.AsyncClient, auth: Auth, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/members", json={"email": "ada@example.org", **body}, headers=auth.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _get(client: httpx.AsyncClient, auth: Auth, member_id: int) -> dict[str, Any]:
    response = await client.get(f"/v1/members/{member_id}", headers=auth.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


# --- create and update ---------------------------------------------------------------------------------------------


async def test_post_creates_then_updates_the_member_with_the_same_normalised_email(
    client: httpx.AsyncClient, acme: Auth, clock: FrozenClock
) -> None:
    created_at = clock.now()
    response = await client.post(
        "/v1/members", json={"email": " Ada@Example.ORG ", "name": "Ada"}, headers=acme.headers
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == MEMBER_FIELDS
    assert isinstance(created["id"], int)
    assert created["id"] >= 1
    assert created["email"] == "ada@example.org"
    assert (created["name"], created["phone"], created["time_zone"]) == ("Ada", None, None)
    assert (created["status"], created["attributes"], created["last_active_at"]) == ("active", {}, None)
    assert when(created["created_at"]) == when(created["updated_at"]) == created_at

    clock.advance(minutes=5)
    update = {
        "email": "ada@example.org",
        "name": "Ada Lovelace",
        "phone": "+44 20 7946 0000",
        "time_zone": "Europe/London",
        "status": "suspended",
        "attributes": {"tier": "gold", "score": 12, "tags": ["a", "b"], "nested": {"x": None}},
    }
    response = await client.post("/v1/members", json=update, headers=acme.headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert set(updated) == MEMBER_FIELDS
    assert updated["id"] == created["id"]
    # The edit goes through the identity path: the phone comes back in E.164.
    assert {key: updated[key] for key in update} == update | {"phone": "+442079460000"}
    assert when(updated["created_at"]) == created_at
    assert when(updated["updated_at"]) == clock.now()
    assert updated["last_active_at"] is None

    assert await _get(client, acme, created["id"]) == {**updated, "external_profiles": [], "entitlements": []}
    assert [item["id"] for item in await list_all(client, acme)] == [created["id"]]


@pytest.mark.parametrize(
    "variant", ["ADA@EXAMPLE.ORG", "\tada@example.org\n", "Ada@example.org", "  ada@EXAMPLE.org  "]
)
async def test_every_spelling_of_an_email_reaches_the_same_member(
    client: httpx.AsyncClient, acme: Auth, variant: str
) -> None:
    created = await _create(client, acme)
    response = await client.post("/v1/members", json={"email": variant, "name": "Again"}, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["email"], response.json()["name"]) == (
        created["id"],
        "ada@example.org",
        "Again",
    )
    assert len(await list_all(client, acme)) == 1


async def test_posting_the_same_body_twice_is_idempotent(client: httpx.AsyncClient, acme: Auth) -> None:
    body = {"email": "ada@example.org", "name": "Ada", "attributes": {"k": 1}}
    first = await client.post("/v1/members", json=body, headers=acme.headers)
    second = await client.post("/v1/members", json=body, headers=acme.headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()


async def test_distinct_emails_create_distinct_members(client: httpx.AsyncClient, acme: Auth) -> None:
    ada = await _create(client, acme)
    grace = await _create(client, acme, email="grace@example.org")
    assert ada["id"] != grace["id"]
    assert [item["email"] for item in await list_all(client, acme)] == ["ada@example.org", "grace@example.org"]


# --- reading one member --------------------------------------------------------------------------------------------


async def _record_crm_data(member: Member, ctx: SyncContext) -> None:
    await ctx.save_profile(member, {"tier": "gold", "points": 120}, external_id="crm-42")
    await ctx.grant(member, "gold-lounge")
    await ctx.grant(member, "early-access")


async def test_get_returns_the_member_with_its_profiles_and_entitlements(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, clock: FrozenClock
) -> None:
    created = await _create(client, acme, name="Ada")
    fresh = await _get(client, acme, created["id"])
    assert fresh == {**created, "external_profiles": [], "entitlements": []}

    provider = FakeSyncProvider("crm")
    provider.on_sync = _record_crm_data
    runtime.providers.register(provider)
    clock.advance(minutes=1)
    member = await load_member(runtime, created["id"])
    request = SyncRequest(tenant=acme.tenant, member=member, provider=provider, kind="manual")
    assert await sync_member(runtime, request) == SyncOutcome.SYNCED

    found = await _get(client, acme, created["id"])
    assert set(found) == MEMBER_FIELDS | {"external_profiles", "entitlements"}
    assert {key: found[key] for key in MEMBER_FIELDS} == created
    [profile] = found["external_profiles"]
    assert set(profile) == {"provider", "external_id", "data", "synced_at", "status", "last_error"}
    assert (profile["provider"], profile["external_id"], profile["data"]) == (
        "crm",
        "crm-42",
        {"tier": "gold", "points": 120},
    )
    assert (profile["status"], profile["last_error"], when(profile["synced_at"])) == ("synced", None, clock.now())
    assert found["entitlements"] == [
        {"source_provider": "crm", "resource_id": "early-access", "expires_at": None},
        {"source_provider": "crm", "resource_id": "gold-lounge", "expires_at": None},
    ]


async def test_one_members_records_do_not_appear_on_another(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    ada = await _create(client, acme)
    grace = await _create(client, acme, email="grace@example.org")
    provider = FakeSyncProvider("crm")
    provider.on_sync = _record_crm_data
    member = await load_member(runtime, ada["id"])
    await sync_member(runtime, SyncRequest(tenant=acme.tenant, member=member, provider=provider, kind="manual"))
    assert len((await _get(client, acme, ada["id"]))["entitlements"]) == 2
    found = await _get(client, acme, grace["id"])
    assert (found["external_profiles"], found["entitlements"]) == ([], [])


# --- listing -------------------------------------------------------------------------------------------------------


async def _page(client: httpx.AsyncClient, auth: Auth, **params: str | int) -> dict[str, Any]:
    response = await client.get("/v1/members", params=params, headers=auth.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    assert set(page) == {"items", "next_cursor"}
    return page


async def test_cursor_pagination_walks_every_member_once_in_id_order(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    # Interleave the tenants' ids, so that a page must skip the other tenant's rows.
    await make_members(runtime, acme.tenant, 4)
    await make_members(runtime, other.tenant, 3)
    for index in range(3):
        await _create(client, acme, email=f"late{index}@example.org")
    everyone = await list_all(client, acme)
    assert len(everyone) == 7

    pages: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 3}
    while True:
        page = await _page(client, acme, **params)
        pages.append(page)
        assert len(pages) <= 3, "pagination does not end"
        if page["next_cursor"] is None:
            break
        assert isinstance(page["next_cursor"], str)
        params["cursor"] = page["next_cursor"]

    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    assert [page["next_cursor"] is None for page in pages] == [False, False, True]
    ids = [item["id"] for page in pages for item in page["items"]]
    assert ids == sorted(ids)
    assert len(set(ids)) == 7
    assert ids == [item["id"] for item in everyone]
    assert all(set(item) == MEMBER_FIELDS for item in everyone)
    other_ids = {item["id"] for item in await list_all(client, other)}
    assert len(other_ids) == 3
    assert not other_ids & set(ids)


async def test_a_full_last_page_ends_the_listing_without_an_empty_page(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    await make_members(runtime, acme.tenant, 6)
    first = await _page(client, acme, limit=3)
    second = await _page(client, acme, limit=3, cursor=first["next_cursor"])
    assert (len(first["items"]), len(second["items"]), second["next_cursor"]) == (3, 3, None)


async def test_listing_defaults_and_bounds(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    assert await _page(client, acme) == {"items": [], "next_cursor": None}
    await make_members(runtime, acme.tenant, 51)
    default = await _page(client, acme)
    assert (len(default["items"]), default["next_cursor"]) == (50, str(default["items"][-1]["id"]))
    assert len((await _page(client, acme, limit=500))["items"]) == 51
    assert len((await _page(client, acme, limit=1))["items"]) == 1


async def test_a_cursor_past_the_end_gives_an_empty_page(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    await make_members(runtime, acme.tenant, 2)
    assert await _page(client, acme, cursor="9223372036854775806") == {"items": [], "next_cursor": None}
    assert len((await _page(client, acme, cursor="0"))["items"]) == 2


@pytest.mark.parametrize("query", ["MEMBER3@example.org", "member3@EXAMPLE.ORG", " member3@example.org "])
async def test_filter_by_email_matches_case_insensitively(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, query: str
) -> None:
    await make_members(runtime, acme.tenant, 5)
    page = await _page(client, acme, email=query)
    assert [item["email"] for item in page["items"]] == ["member3@example.org"]
    assert page["next_cursor"] is None


async def test_filter_by_an_unknown_email_is_empty(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    await make_members(runtime, acme.tenant, 3)
    assert await _page(client, acme, email="nobody@example.org") == {"items": [], "next_cursor": None}


# --- bad input: ids and not found ----------------------------------------------------------------------------------


async def test_unknown_member_is_404_with_a_json_error(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    await _create(client, acme)
    before = await stored_members(runtime)
    body = assert_error(await client.get("/v1/members/424242", headers=acme.headers), 404, "MemberNotFound")
    assert "424242" in body["error"]["message"]
    assert await stored_members(runtime) == before


async def test_another_tenants_member_is_indistinguishable_from_a_missing_one(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    theirs = await _create(client, other, email="secret@example.org", name="Secret")
    missing_id = theirs["id"] + 1000
    before = await stored_members(runtime)

    foreign = assert_error(await client.get(f"/v1/members/{theirs['id']}", headers=acme.headers), 404, "MemberNotFound")
    missing = assert_error(await client.get(f"/v1/members/{missing_id}", headers=acme.headers), 404, "MemberNotFound")
    assert foreign["error"]["message"].replace(str(theirs["id"]), "ID") == missing["error"]["message"].replace(
        str(missing_id), "ID"
    )
    assert "secret" not in json.dumps(foreign).lower()
    assert "other" not in json.dumps(foreign).lower()
    assert await stored_members(runtime) == before


@pytest.mark.parametrize("member_id", ["abc", "0", "-1", "99999999999999999999", "9223372036854775808", "1.5", "1e3"])
async def test_malformed_member_id_is_422_naming_the_field(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, member_id: str
) -> None:
    await _create(client, acme)
    before = await stored_members(runtime)
    assert_validation_error(await client.get(f"/v1/members/{member_id}", headers=acme.headers), "path", "member_id")
    assert await stored_members(runtime) == before


async def test_the_largest_valid_member_id_is_a_plain_404(client: httpx.AsyncClient, acme: Auth) -> None:
    assert_error(await client.get("/v1/members/9223372036854775807", headers=acme.headers), 404, "MemberNotFound")


# --- bad input: authentication -------------------------------------------------------------------------------------


def _bad_authorizations(token: str) -> list[dict[str, str]]:
    return [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer ms_not-a-real-token"},
        {"Authorization": "Bearer not-even-the-prefix"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": f"Bearer ms_{'a' * 10_000}"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Token {token}"},
        {"Authorization": token},
        {"X-Api-Key": token},
    ]


async def test_every_endpoint_refuses_a_missing_or_wrong_token(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    member = await _create(client, acme)
    before = await stored_members(runtime)
    requests = [
        ("GET", "/v1/members", None),
        ("GET", f"/v1/members/{member['id']}", None),
        ("POST", "/v1/members", {"email": "ada@example.org", "name": "Hijacked"}),
        ("POST", "/v1/members", {"email": "new@example.org"}),
        ("POST", f"/v1/members/{member['id']}/login", None),
    ]
    for headers in _bad_authorizations(acme.token):
        for method, url, body in requests:
            response = await client.request(method, url, json=body, headers=headers)
            assert_error(response, 401, "Unauthorized")
            assert response.headers["www-authenticate"] == "Bearer", (method, url, headers)
    assert await stored_members(runtime) == before


async def test_the_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient, acme: Auth) -> None:
    response = await client.get("/v1/members", headers={"Authorization": f"bearer {acme.token}"})
    assert response.status_code == 200, response.text


# --- bad input: the POST body --------------------------------------------------------------------------------------

BAD_EMAILS = [
    "not-an-email",
    "",
    "   ",
    "a@b",
    "@example.org",
    "ada@",
    "ada@@example.org",
    "ada@ex@ample.org",
    "ada lovelace@example.org",
    "ada@exa mple.org",
    "ada\t@example.org",
    "ada\n@example.org",
    "ada\r\n@example.org",
    "ada\x00@example.org",
    "ada\x1b@example.org",
    "ada\x7f@example.org",
    "ada\u00a0@example.org",
    "ada\u2028@example.org",
    "ada@" + "x" * 320 + ".org",
    "a" * 10_000 + "@example.org",
]


@pytest.mark.parametrize("email", BAD_EMAILS, ids=[f"email{index}" for index in range(len(BAD_EMAILS))])
async def test_an_invalid_email_is_422_naming_email(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, email: str
) -> None:
    await _create(client, acme)
    before = await stored_members(runtime)
    response = await client.post("/v1/members", json={"email": email}, headers=acme.headers)
    assert_validation_error(response, "body", "email")
    assert await stored_members(runtime) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "ada@example.org", "is_admin": True}, "is_admin"),
        ({"email": "ada@example.org", "tenant_id": 2}, "tenant_id"),
        ({"email": "ada@example.org", "id": 99}, "id"),
        ({"email": "ada@example.org", "last_active_at": "2030-01-01T00:00:00Z"}, "last_active_at"),
        ({"email": "ada@example.org", "name": 123}, "name"),
        ({"email": "ada@example.org", "name": ["Ada"]}, "name"),
        ({"email": "ada@example.org", "name": {"first": "Ada"}}, "name"),
        ({"email": "ada@example.org", "name": True}, "name"),
        ({"email": "ada@example.org", "name": "x" * 10_000}, "name"),
        ({"email": "ada@example.org", "name": "x" * 256}, "name"),
        ({"email": "ada@example.org", "phone": 4420794600}, "phone"),
        ({"email": "ada@example.org", "phone": "1" * 33}, "phone"),
        ({"email": "ada@example.org", "time_zone": "x" * 65}, "time_zone"),
        ({"email": "ada@example.org", "attributes": "tier=gold"}, "attributes"),
        ({"email": "ada@example.org", "attributes": ["tier"]}, "attributes"),
        ({"email": "ada@example.org", "attributes": 1}, "attributes"),
        ({"email": "ada@example.org", "attributes": None}, "attributes"),
        ({"email": "ada@example.org", "attributes": {f"k{i}": i for i in range(101)}}, "attributes"),
        ({"email": "ada@example.org", "status": "ACTIVE"}, "status"),
        ({"email": "ada@example.org", "status": "active; drop table members"}, "status"),
        ({"email": "ada@example.org", "status": ""}, "status"),
        ({"email": "ada@example.org", "status": None}, "status"),
        ({"email": 42}, "email"),
        ({"email": None}, "email"),
        ({"email": ["ada@example.org"]}, "email"),
        ({"name": "No Email"}, "email"),
        ({}, "email"),
    ],
)
async def test_an_invalid_body_is_422_naming_the_field_and_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, body: dict[str, Any], field: str
) -> None:
    original = await _create(client, acme, name="Ada", attributes={"keep": True})
    before = await stored_members(runtime)
    response = await client.post("/v1/members", json=body, headers=acme.headers)
    assert_validation_error(response, "body", field)
    assert await stored_members(runtime) == before
    assert {key: value for key, value in (await _get(client, acme, original["id"])).items() if key in original} == (
        original
    )


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"email": "ada@example.org",}',
        b'{"email": "ada@example.org"',
        b"",
        b"null",
        b"[]",
        b'["ada@example.org"]',
        b'"ada@example.org"',
        b"42",
        b"\xff\xfe\x00",
        b"{" * 100_000,
        b"[" * 100_000,
    ],
)
async def test_a_body_that_is_not_a_json_object_is_rejected(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, content: bytes
) -> None:
    await _create(client, acme)
    before = await stored_members(runtime)
    headers = acme.headers | {"Content-Type": "application/json"}
    response = await client.post("/v1/members", content=content, headers=headers)
    assert response.status_code in (400, 422), response.text
    assert "detail" in response.json()
    assert await stored_members(runtime) == before


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.org", "name": "x" * ONE_MB},
        {"email": "ada@example.org", "phone": "1" * ONE_MB},
        {"email": "x" * ONE_MB + "@example.org"},
        {"email": "ada@example.org", "attributes": {f"key{i}": "v" * 90 for i in range(11_000)}},
    ],
    ids=["name", "phone", "email", "many-attributes"],
)
async def test_a_1mb_body_is_a_4xx_and_stores_nothing(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, body: dict[str, Any]
) -> None:
    await _create(client, acme)
    before = await stored_members(runtime)
    content = json.dumps(body).encode()
    assert len(content) >= ONE_MB
    response = await client.post(
        "/v1/members", content=content, headers=acme.headers | {"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.status_code
    assert await stored_members(runtime) == before


async def test_a_1mb_attribute_value_is_refused(runtime: Runtime, raw_client: httpx.AsyncClient, acme: Auth) -> None:
    before = await stored_members(runtime)
    body = {"email": "big@example.org", "attributes": {"blob": "x" * ONE_MB}}
    response = await raw_client.post("/v1/members", json=body, headers=acme.headers)
    assert response.status_code != 500
    assert 400 <= response.status_code < 500, response.status_code
    assert await stored_members(runtime) == before


# Nested 256 deep, pydantic refuses to serialise it; nested 1000 deep, the JSON decoder refuses it up front.
def _nested(depth: int) -> bytes:
    return ('{"email": "deep@example.org", "attributes": {"a": ' + "[" * depth + "]" * depth + "}}").encode()


async def test_deeply_nested_attributes_beyond_the_parser_limit_are_refused(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    before = await stored_members(runtime)
    headers = acme.headers | {"Content-Type": "application/json"}
    response = await client.post("/v1/members", content=_nested(5000), headers=headers)
    assert response.status_code == 400, response.text
    assert await stored_members(runtime) == before


async def test_deeply_nested_attributes_never_poison_the_member_list(raw_client: httpx.AsyncClient, acme: Auth) -> None:
    headers = acme.headers | {"Content-Type": "application/json"}
    response = await raw_client.post("/v1/members", content=_nested(300), headers=headers)
    assert response.status_code != 500
    listing = await raw_client.get("/v1/members", headers=acme.headers)
    assert listing.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"email": "nul@example.org", "name": "Ada\x00Lovelace"},
        {"email": "nul@example.org", "phone": "\x00"},
        {"email": "nul@example.org", "attributes": {"k": "a\x00b"}},
        {"email": "nul@example.org", "attributes": {"\x00": 1}},
    ],
    ids=["name", "phone", "attribute-value", "attribute-key"],
)
async def test_nul_characters_in_text_fields_never_cause_a_500(
    request: pytest.FixtureRequest, raw_client: httpx.AsyncClient, acme: Auth, database_url: str, body: dict[str, Any]
) -> None:
    """SQLite stores NUL; PostgreSQL refuses it, so the API must refuse it (4xx) or store it (2xx), never 500."""
    response = await raw_client.post("/v1/members", json=body, headers=acme.headers)
    assert response.status_code != 500
    assert response.status_code in (201, 422), response.text


# --- bad input: the list query -------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc", "1.5", "", "99999999999999999999"])
async def test_an_out_of_range_limit_is_422_naming_limit(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, limit: str
) -> None:
    await make_members(runtime, acme.tenant, 2)
    before = await stored_members(runtime)
    response = await client.get("/v1/members", params={"limit": limit}, headers=acme.headers)
    assert_validation_error(response, "query", "limit")
    assert await stored_members(runtime) == before


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", " 1", "1 ", "0x10", "+5", "", "1e3"])
async def test_a_cursor_not_issued_by_the_api_is_422(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, cursor: str
) -> None:
    await make_members(runtime, acme.tenant, 2)
    before = await stored_members(runtime)
    response = await client.get("/v1/members", params={"cursor": cursor}, headers=acme.headers)
    body = assert_error(response, 422, "InvalidInput")
    assert body["error"]["message"].startswith("cursor")
    assert await stored_members(runtime) == before


@pytest.mark.parametrize("cursor", ["1" * 20, "1" * 30, "9" * 1000])
async def test_an_overlong_cursor_is_422_naming_cursor(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, cursor: str
) -> None:
    await make_members(runtime, acme.tenant, 2)
    response = await client.get("/v1/members", params={"cursor": cursor}, headers=acme.headers)
    assert_validation_error(response, "query", "cursor")


@pytest.mark.parametrize("cursor", ["9999999999999999999", "9223372036854775808", "²", "1²"])
async def test_a_cursor_out_of_range_or_with_unicode_digits_is_422_not_500(
    raw_client: httpx.AsyncClient, acme: Auth, cursor: str
) -> None:
    response = await raw_client.get("/v1/members", params={"cursor": cursor}, headers=acme.headers)
    assert response.status_code == 422, response.status_code


@pytest.mark.parametrize("email", ["x", "a@b", "no-at-sign.org", "ada @example.org", "ada\x00@example.org"])
async def test_an_invalid_email_filter_is_422(client: httpx.AsyncClient, acme: Auth, email: str) -> None:
    response = await client.get("/v1/members", params={"email": email}, headers=acme.headers)
    body = assert_error(response, 422, "InvalidInput")
    assert body["error"]["message"].startswith("email")


async def test_an_overlong_email_filter_is_422_naming_email(client: httpx.AsyncClient, acme: Auth) -> None:
    response = await client.get("/v1/members", params={"email": "a" * 10_000 + "@example.org"}, headers=acme.headers)
    assert_validation_error(response, "query", "email")


# --- tenant isolation ----------------------------------------------------------------------------------------------


async def test_another_tenant_cannot_read_acmes_member(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    ada = await _create(client, acme, name="Ada")
    before = await stored_members(runtime)
    assert_error(await client.get(f"/v1/members/{ada['id']}", headers=other.headers), 404, "MemberNotFound")
    assert await stored_members(runtime) == before


async def test_another_tenant_lists_only_its_own_members(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    await make_members(runtime, acme.tenant, 5)
    assert await list_all(client, other) == []
    assert await _page(client, other, email="member1@example.org") == {"items": [], "next_cursor": None}
    # A cursor taken from acme's listing only moves other's own listing along.
    acme_page = await _page(client, acme, limit=2)
    assert await _page(client, other, cursor=acme_page["next_cursor"]) == {"items": [], "next_cursor": None}
    await make_members(runtime, other.tenant, 2)
    theirs = await list_all(client, other)
    assert len(theirs) == 2
    assert {item["id"] for item in theirs}.isdisjoint({item["id"] for item in await list_all(client, acme)})


async def test_the_same_email_in_another_tenant_is_a_separate_member(
    client: httpx.AsyncClient, acme: Auth, other: Auth, clock: FrozenClock
) -> None:
    ada = await _create(client, acme, name="Ada", attributes={"tenant": "acme"})
    clock.advance(minutes=1)

    response = await client.post(
        "/v1/members",
        json={"email": "ADA@example.org", "name": "Impostor", "status": "banned", "attributes": {"tenant": "other"}},
        headers=other.headers,
    )
    assert response.status_code == 201, response.text
    theirs = response.json()
    assert theirs["id"] != ada["id"]
    assert (theirs["email"], theirs["name"], theirs["status"]) == ("ada@example.org", "Impostor", "banned")

    assert await _get(client, acme, ada["id"]) == {**ada, "external_profiles": [], "entitlements": []}
    assert [item["id"] for item in await list_all(client, acme)] == [ada["id"]]
    assert [item["id"] for item in await list_all(client, other)] == [theirs["id"]]

    # Updating again on either side touches only that side.
    response = await client.post(
        "/v1/members", json={"email": "ada@example.org", "name": "Ada L."}, headers=acme.headers
    )
    assert (response.status_code, response.json()["id"]) == (200, ada["id"])
    assert (await _get(client, other, theirs["id"]))["name"] == "Impostor"
    assert_error(await client.get(f"/v1/members/{theirs['id']}", headers=acme.headers), 404, "MemberNotFound")


async def test_another_tenant_cannot_see_acmes_records(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    member = await make_member(runtime, acme.tenant)
    provider = FakeSyncProvider("crm")
    provider.on_sync = _record_crm_data
    await sync_member(runtime, SyncRequest(tenant=acme.tenant, member=member, provider=provider, kind="manual"))
    theirs = await _create(client, other)
    found = await _get(client, other, theirs["id"])
    assert (found["external_profiles"], found["entitlements"]) == ([], [])


async def test_an_edit_is_audited_with_its_token_and_a_bad_phone_is_refused(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    created = await _create(client, acme, name="Ada Lovelace")
    edit = {"email": "ada@example.org", "time_zone": "europe/london", "attributes": {"tier": "gold"}}
    response = await client.post("/v1/members", json=edit, headers=acme.headers)
    assert (response.status_code, response.json()["time_zone"]) == (200, "Europe/London")
    history = await client.get(f"/v1/members/{created['id']}/history", headers=acme.headers)
    latest = history.json()["items"][0]
    changed = {change["field"]: change["after"] for change in latest["changes"]}
    assert changed["time_zone"] == "Europe/London"
    assert (latest["source"], latest["actor"], latest["operation"]) == ("local", f"token:{acme.token[:10]}", "edit")
    before = await stored_members(runtime)
    refused = await client.post("/v1/members", json={"email": "ada@example.org", "phone": "12"}, headers=acme.headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith("phone:")
    assert await stored_members(runtime) == before
