"""API fixtures: an HTTP client on the app, and two tenants ("acme" and "other") each with its own token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from membersync.app import create_app
from membersync.runtime import Runtime
from tests.api.support import Auth
from tests.factories import make_tenant, make_token


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://test") as c:
        yield c


@pytest.fixture
async def raw_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Like `client`, but an unhandled server error comes back as a 500 response instead of raising."""
    transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def acme(runtime: Runtime) -> Auth:
    tenant = await make_tenant(runtime, "acme")
    return Auth(tenant, await make_token(runtime, tenant))


@pytest.fixture
async def other(runtime: Runtime, acme: Auth) -> Auth:
    """A second tenant, created after "acme"; depends on `acme` so the two always exist together."""
    tenant = await make_tenant(runtime, "other")
    return Auth(tenant, await make_token(runtime, tenant))
