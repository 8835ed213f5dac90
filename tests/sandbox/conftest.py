from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from membersync.clock import FrozenClock
from membersync.sandbox.push_destination import PushDestination, create_push_destination_app
from tests.sandbox.pushes import AUTHORIZATION


@pytest.fixture
def destination(clock: FrozenClock) -> PushDestination:
    return PushDestination(clock=clock.now)


@pytest.fixture
async def client(destination: PushDestination) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_push_destination_app(destination))
    async with httpx.AsyncClient(transport=transport, base_url="http://destination", headers=AUTHORIZATION) as client:
        yield client
