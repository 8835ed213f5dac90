"""GET /v1/sync-status and GET /v1/links, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from tests.api.support import Auth
from tests.factories import make_member


@pytest.fixture(autouse=True)
def crm_source(runtime: Runtime) -> None:
    runtime.providers.register(FakeSyncProvider("crm"))


async def _link(runtime: Runtime, member: object, external_id: str, *, failed: bool = False) -> None:
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_synced(
            session, member, external_id, "crm", runtime.clock.now(), metadata={"tier": "gold"}
        )
        if failed:
            await runtime.tracker.mark_failed(session, member, "crm", "503 from CRM", runtime.clock.now())


async def test_sync_status_of_a_linked_and_an_unlinked_member(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth
) -> None:
    linked = await make_member(runtime, acme.tenant, "linked@example.org")
    unlinked = await make_member(runtime, acme.tenant, "unlinked@example.org")
    await _link(runtime, linked, "CRM-1")
    query = {"entity_type": "member", "source": "crm"}
    response = await client.get("/v1/sync-status", params=query | {"entity_id": linked.id}, headers=acme.headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["external_id"], body["metadata"]) == ("synced", "CRM-1", {"tier": "gold"})
    assert body["last_synced_at"] is not None
    response = await client.get("/v1/sync-status", params=query | {"entity_id": unlinked.id}, headers=acme.headers)
    assert (response.status_code, response.json()["status"]) == (200, "not_synced")


async def test_sync_status_is_404_for_unknown_or_foreign_entities(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    foreign = await make_member(runtime, other.tenant, "foreign@example.org")
    await _link(runtime, foreign, "CRM-9")
    for entity_id in ("999999", str(foreign.id)):
        params = {"entity_type": "member", "entity_id": entity_id, "source": "crm"}
        response = await client.get("/v1/sync-status", params=params, headers=acme.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NotFound"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"entity_id": "1", "source": "crm"}, "entity_type"),
        ({"entity_type": "member", "source": "crm"}, "entity_id"),
        ({"entity_type": "member", "entity_id": "1"}, "source"),
        ({"entity_type": "Member!", "entity_id": "1", "source": "crm"}, "entity_type"),
        ({"entity_type": "member", "entity_id": "1", "source": "x" * 100}, "source"),
        ({"entity_type": "member", "entity_id": "1" * 100, "source": "crm"}, "entity_id"),
    ],
)
async def test_sync_status_bad_query_is_422_naming_the_field(
    client: httpx.AsyncClient, acme: Auth, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/sync-status", params=params, headers=acme.headers)
    assert response.status_code == 422
    assert any(error["loc"][-1] == field for error in response.json()["detail"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"entity_type": "invoice", "entity_id": "1", "source": "crm"}, "entity_type"),
        ({"entity_type": "member", "entity_id": "1", "source": "nope"}, "source"),
        ({"entity_type": "member", "entity_id": "abc", "source": "crm"}, "entity_id"),
        ({"entity_type": "member", "entity_id": "99999999999999999999", "source": "crm"}, "entity_id"),
    ],
)
async def test_sync_status_unknown_names_are_422_naming_the_field(
    client: httpx.AsyncClient, acme: Auth, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/sync-status", params=params, headers=acme.headers)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(f"{field}:")


async def test_links_page_filter_and_isolation(
    runtime: Runtime, client: httpx.AsyncClient, acme: Auth, other: Auth
) -> None:
    for index in range(5):
        member = await make_member(runtime, acme.tenant, f"m{index}@example.org")
        await _link(runtime, member, f"CRM-{index}", failed=index % 2 == 0)
    await _link(runtime, await make_member(runtime, other.tenant, "x@example.org"), "CRM-X")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/v1/links", params=params, headers=acme.headers)).json()
        seen += [item["external_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"CRM-{index}" for index in range(5)]
    failed = await client.get("/v1/links", params={"status": "failed", "source": "crm"}, headers=acme.headers)
    assert [item["external_id"] for item in failed.json()["items"]] == ["CRM-0", "CRM-2", "CRM-4"]
    assert failed.json()["items"][0]["last_error"] == "503 from CRM"


@pytest.mark.parametrize(
    "params",
    [{"status": "exploded"}, {"limit": 0}, {"limit": 501}, {"cursor": "abc"}, {"source": "Bad Source"}],
)
async def test_links_bad_query_is_422(client: httpx.AsyncClient, acme: Auth, params: dict[str, str | int]) -> None:
    response = await client.get("/v1/links", params=params, headers=acme.headers)
    assert response.status_code == 422


@pytest.mark.parametrize("path", ["/v1/links", "/v1/sync-status?entity_type=member&entity_id=1&source=crm"])
async def test_tracker_endpoints_need_a_token(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
