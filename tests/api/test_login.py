"""POST /v1/members/{id}/login: a JWT whose claims see data refreshed inline, provider failures tolerated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from membersync.clock import FrozenClock
from membersync.login.service import decode_token
from membersync.models import Member
from membersync.provider.context import SyncContext
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from tests.api.support import Auth, assert_error, assert_validation_error, stored_members, when

LOGIN_AGE = timedelta(minutes=30)


@pytest.fixture
def wall_clock(clock: FrozenClock) -> FrozenClock:
    """The frozen clock, set 45 minutes behind the wall clock.

    `decode_token` checks `iat` and `exp` against the wall clock (PyJWT), not `runtime.clock`, so a token
    decodes only while the wall time lies in [iat, iat + jwt_ttl]. Starting 45 minutes behind leaves room for
    the tests to advance the frozen clock by up to 45 minutes; it still moves only when told to.
    """
    clock.set(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=45))
    return clock


async def _member(client: httpx.AsyncClient, auth: Auth, email: str = "ada@example.org") -> int:
    response = await client.post("/v1/members", json={"email": email, "name": "Ada"}, headers=auth.headers)
    assert response.status_code in (200, 201), response.text
    member_id: int = response.json()["id"]
    return member_id


async def _login(client: httpx.AsyncClient, auth: Auth, member_id: int) -> dict[str, Any]:
    response = await client.post(f"/v1/members/{member_id}/login", headers=auth.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"token", "claims", "freshness"}
    return body


async def _get(client: httpx.AsyncClient, auth: Auth, member_id: int) -> dict[str, Any]:
    response = await client.get(f"/v1/members/{member_id}", headers=auth.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _register(runtime: Runtime, name: str = "fake", login_age: timedelta | None = LOGIN_AGE) -> FakeSyncProvider:
    provider = FakeSyncProvider(name, login_age=login_age)
    runtime.providers.register(provider)
    return provider


async def _grant_gold(member: Member, ctx: SyncContext) -> None:
    await ctx.save_profile(member, {"tier": "gold"}, external_id=f"crm-{member.id}")
    await ctx.grant(member, "gold")


async def _fail(member: Member, ctx: SyncContext) -> None:
    raise RuntimeError("crm is down")


# --- the token -----------------------------------------------------------------------------------------------------


async def test_login_issues_a_signed_jwt_for_the_member(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    member_id = await _member(client, acme)
    body = await _login(client, acme, member_id)
    claims = decode_token(runtime, body["token"])
    assert claims == body["claims"]
    assert set(claims) == {"sub", "tenant", "email", "iat", "exp", "entitlements"}
    assert (claims["sub"], claims["tenant"], claims["email"]) == (str(member_id), "acme", "ada@example.org")
    assert claims["iat"] == int(wall_clock.now().timestamp())
    assert claims["exp"] > claims["iat"]
    assert claims["exp"] - claims["iat"] == runtime.settings.jwt_ttl_seconds
    assert claims["entitlements"] == []
    assert body["freshness"] == {}


async def test_a_tampered_token_does_not_decode(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    token: str = (await _login(client, acme, await _member(client, acme)))["token"]
    header, _payload, signature = token.split(".")
    forged = jwt.encode({"sub": "1", "tenant": "other"}, "another-secret-that-is-long-enough-for-hs256")
    with pytest.raises(jwt.InvalidSignatureError):
        decode_token(runtime, f"{header}.{forged.split('.')[1]}.{signature}")
    with pytest.raises(jwt.InvalidSignatureError):
        decode_token(runtime, forged)


# --- refreshing login-bound providers ------------------------------------------------------------------------------


async def test_the_first_login_syncs_and_the_jwt_sees_the_fresh_data(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    provider = _register(runtime)
    provider.on_sync = _grant_gold
    member_id = await _member(client, acme)
    assert provider.sync_call_count == 0

    body = await _login(client, acme, member_id)
    assert body["freshness"] == {"fake": "synced"}
    assert provider.sync_call_count == 1
    claims = decode_token(runtime, body["token"])
    assert claims["entitlements"] == ["gold"]
    assert body["claims"] == claims

    found = await _get(client, acme, member_id)
    assert found["entitlements"] == [{"source_provider": "fake", "resource_id": "gold", "expires_at": None}]
    [profile] = found["external_profiles"]
    assert (profile["provider"], profile["status"], profile["data"]) == ("fake", "synced", {"tier": "gold"})
    assert (profile["external_id"], when(profile["synced_at"])) == (f"crm-{member_id}", wall_clock.now())


async def test_a_login_within_the_bound_is_fresh_and_one_past_it_syncs_again(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    provider = _register(runtime)
    provider.on_sync = _grant_gold
    member_id = await _member(client, acme)
    assert (await _login(client, acme, member_id))["freshness"] == {"fake": "synced"}

    second = await _login(client, acme, member_id)
    assert second["freshness"] == {"fake": "fresh"}
    assert provider.sync_call_count == 1
    assert decode_token(runtime, second["token"])["entitlements"] == ["gold"]

    wall_clock.advance(minutes=29)
    assert (await _login(client, acme, member_id))["freshness"] == {"fake": "fresh"}
    assert provider.sync_call_count == 1

    wall_clock.advance(minutes=2)
    third = await _login(client, acme, member_id)
    assert third["freshness"] == {"fake": "synced"}
    assert provider.sync_call_count == 2
    assert decode_token(runtime, third["token"])["entitlements"] == ["gold"]
    [profile] = (await _get(client, acme, member_id))["external_profiles"]
    assert when(profile["synced_at"]) == wall_clock.now()


async def test_claims_follow_what_the_latest_sync_recorded(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    provider = _register(runtime)

    async def upgrade_after_first_sync(member: Member, ctx: SyncContext) -> None:
        await ctx.revoke_all(member)
        await ctx.grant(member, "gold" if provider.sync_call_count == 1 else "platinum")

    provider.on_sync = upgrade_after_first_sync
    member_id = await _member(client, acme)
    assert decode_token(runtime, (await _login(client, acme, member_id))["token"])["entitlements"] == ["gold"]
    wall_clock.advance(minutes=31)
    upgraded = await _login(client, acme, member_id)
    assert upgraded["freshness"] == {"fake": "synced"}
    assert decode_token(runtime, upgraded["token"])["entitlements"] == ["platinum"]


async def test_expired_entitlements_are_left_out_of_the_claims(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    provider = _register(runtime)

    async def grant_with_expiry(member: Member, ctx: SyncContext) -> None:
        await ctx.grant(member, "lapsed", expires_at=ctx.clock.now() - timedelta(minutes=1))
        await ctx.grant(member, "trial", expires_at=ctx.clock.now() + timedelta(days=7))
        await ctx.grant(member, "gold")

    provider.on_sync = grant_with_expiry
    member_id = await _member(client, acme)
    body = await _login(client, acme, member_id)
    assert decode_token(runtime, body["token"])["entitlements"] == ["gold", "trial"]


async def test_a_failing_provider_does_not_fail_the_login(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    provider = _register(runtime)
    provider.on_sync = _fail
    member_id = await _member(client, acme)

    body = await _login(client, acme, member_id)
    assert body["freshness"] == {"fake": "failed"}
    claims = decode_token(runtime, body["token"])
    assert (claims["sub"], claims["entitlements"]) == (str(member_id), [])
    found = await _get(client, acme, member_id)
    [profile] = found["external_profiles"]
    assert (profile["status"], profile["synced_at"]) == ("failed", None)
    assert "crm is down" in profile["last_error"]
    assert found["entitlements"] == []

    # Still stale, so the next login tries again; once the provider recovers, the login syncs.
    assert (await _login(client, acme, member_id))["freshness"] == {"fake": "failed"}
    assert provider.sync_call_count == 2
    provider.on_sync = _grant_gold
    recovered = await _login(client, acme, member_id)
    assert recovered["freshness"] == {"fake": "synced"}
    assert decode_token(runtime, recovered["token"])["entitlements"] == ["gold"]
    [profile] = (await _get(client, acme, member_id))["external_profiles"]
    assert (profile["status"], profile["last_error"]) == ("synced", None)


async def test_a_provider_failing_after_a_success_keeps_the_earlier_data(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    provider = _register(runtime)
    provider.on_sync = _grant_gold
    member_id = await _member(client, acme)
    await _login(client, acme, member_id)
    synced_at = wall_clock.now()

    wall_clock.advance(minutes=31)
    provider.on_sync = _fail
    body = await _login(client, acme, member_id)
    assert body["freshness"] == {"fake": "failed"}
    assert decode_token(runtime, body["token"])["entitlements"] == ["gold"]
    [profile] = (await _get(client, acme, member_id))["external_profiles"]
    assert (profile["status"], when(profile["synced_at"]), profile["data"]) == ("failed", synced_at, {"tier": "gold"})


async def test_only_login_bound_providers_available_to_the_tenant_run_at_login(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    crm = _register(runtime, "crm")
    crm.on_sync = _grant_gold
    broken = _register(runtime, "broken")
    broken.on_sync = _fail
    nightly = _register(runtime, "nightly", login_age=None)
    hidden = FakeSyncProvider("hidden", login_age=LOGIN_AGE, available_for_tenant=False)
    runtime.providers.register(hidden)
    member_id = await _member(client, acme)

    body = await _login(client, acme, member_id)
    assert body["freshness"] == {"broken": "failed", "crm": "synced"}
    assert decode_token(runtime, body["token"])["entitlements"] == ["gold"]
    assert (crm.sync_call_count, broken.sync_call_count, nightly.sync_call_count, hidden.sync_call_count) == (
        1,
        1,
        0,
        0,
    )


# --- activity ------------------------------------------------------------------------------------------------------


async def test_login_records_last_active_at(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    member_id = await _member(client, acme)
    bystander = await _member(client, acme, "grace@example.org")
    assert (await _get(client, acme, member_id))["last_active_at"] is None

    await _login(client, acme, member_id)
    assert when((await _get(client, acme, member_id))["last_active_at"]) == wall_clock.now()

    wall_clock.advance(minutes=10)
    await _login(client, acme, member_id)
    found = await _get(client, acme, member_id)
    assert when(found["last_active_at"]) == wall_clock.now()
    updated_at = when(found["updated_at"])
    assert updated_at is not None
    assert updated_at < wall_clock.now()
    assert (await _get(client, acme, bystander))["last_active_at"] is None


# --- bad requests and tenant isolation -----------------------------------------------------------------------------


async def test_login_of_an_unknown_member_is_404(runtime: Runtime, client: httpx.AsyncClient, acme: Auth) -> None:
    provider = _register(runtime)
    await _member(client, acme)
    before = await stored_members(runtime)
    assert_error(await client.post("/v1/members/424242/login", headers=acme.headers), 404, "MemberNotFound")
    assert provider.sync_call_count == 0
    assert await stored_members(runtime) == before


@pytest.mark.parametrize("member_id", ["abc", "0", "-1", "99999999999999999999"])
async def test_login_with_a_malformed_id_is_422_naming_the_field(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, member_id: str
) -> None:
    await _member(client, acme)
    before = await stored_members(runtime)
    response = await client.post(f"/v1/members/{member_id}/login", headers=acme.headers)
    assert_validation_error(response, "path", "member_id")
    assert await stored_members(runtime) == before


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer ms_wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}], ids=str
)
async def test_login_without_a_valid_token_is_401(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, headers: dict[str, str]
) -> None:
    provider = _register(runtime)
    member_id = await _member(client, acme)
    before = await stored_members(runtime)
    assert_error(await client.post(f"/v1/members/{member_id}/login", headers=headers), 401, "Unauthorized")
    assert provider.sync_call_count == 0
    assert await stored_members(runtime) == before


async def test_another_tenant_cannot_log_in_acmes_member(
    wall_clock: FrozenClock, runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    provider = _register(runtime)
    provider.on_sync = _grant_gold
    acme_id = await _member(client, acme)
    before = await stored_members(runtime)

    foreign = assert_error(
        await client.post(f"/v1/members/{acme_id}/login", headers=other.headers), 404, "MemberNotFound"
    )
    missing = assert_error(await client.post("/v1/members/424242/login", headers=other.headers), 404, "MemberNotFound")
    assert foreign["error"]["message"].replace(str(acme_id), "ID") == missing["error"]["message"].replace(
        "424242", "ID"
    )
    assert provider.sync_call_count == 0
    assert await stored_members(runtime) == before
    found = await _get(client, acme, acme_id)
    assert (found["last_active_at"], found["external_profiles"], found["entitlements"]) == (None, [], [])

    # other's own member with the same email logs in as itself, in its own tenant.
    other_id = await _member(client, other)
    assert other_id != acme_id
    claims = decode_token(runtime, (await _login(client, other, other_id))["token"])
    assert (claims["sub"], claims["tenant"], claims["email"]) == (str(other_id), "other", "ada@example.org")
    assert (await _get(client, acme, acme_id))["entitlements"] == []


async def test_decode_token_accepts_what_login_just_issued_under_the_runtime_clock(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, clock: FrozenClock
) -> None:
    clock.set(datetime.now(UTC) + timedelta(hours=1))
    body = await _login(client, acme, await _member(client, acme))
    assert decode_token(runtime, body["token"]) == body["claims"]
