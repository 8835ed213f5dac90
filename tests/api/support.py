"""Helpers shared by the API tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import httpx
from sqlalchemy import select

from membersync.models import Member, Tenant
from membersync.runtime import Runtime

MEMBER_FIELDS = {
    "id",
    "email",
    "name",
    "phone",
    "time_zone",
    "status",
    "attributes",
    "last_active_at",
    "created_at",
    "updated_at",
}


class Auth(NamedTuple):
    tenant: Tenant
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def when(value: str | None) -> datetime | None:
    """A timestamp from a JSON response, timezone-aware."""
    return None if value is None else datetime.fromisoformat(value)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A product error: exactly `{"error": {"code", "message"}}`."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body


def assert_validation_error(response: httpx.Response, *loc: str | int) -> list[dict[str, Any]]:
    """A FastAPI 422 whose `detail` names the field at `loc` (e.g. "body", "email")."""
    assert response.status_code == 422, response.text
    detail: list[dict[str, Any]] = response.json()["detail"]
    locations = [tuple(item["loc"][: len(loc)]) for item in detail]
    assert tuple(loc) in locations, detail
    return detail


async def list_all(client: httpx.AsyncClient, auth: Auth, limit: int = 500, **params: str) -> list[dict[str, Any]]:
    """Every member visible to `auth`, following the cursor."""
    items: list[dict[str, Any]] = []
    query: dict[str, str | int] = {"limit": limit, **params}
    while True:
        response = await client.get("/v1/members", params=query, headers=auth.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        query["cursor"] = page["next_cursor"]


async def stored_members(runtime: Runtime) -> list[tuple[Any, ...]]:
    """Every member row of every tenant, straight from the database, for before/after comparisons."""
    columns = [column for column in Member.__table__.columns]
    async with runtime.database.read_sessions() as session:
        rows = await session.execute(select(*columns).order_by(Member.id))
        return [tuple(row) for row in rows.all()]


async def load_member(runtime: Runtime, member_id: int) -> Member:
    async with runtime.database.read_sessions() as session:
        member = await session.get(Member, member_id)
        assert member is not None
        return member
