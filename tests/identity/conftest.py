"""A tenant whose records come from two registered sources, "crm" and "patreon"."""

from __future__ import annotations

import pytest

from membersync.models import Tenant
from membersync.runtime import Runtime
from tests.factories import make_tenant


@pytest.fixture
async def tenant(runtime: Runtime) -> Tenant:
    runtime.tracker.registry.register_source("crm")
    runtime.tracker.registry.register_source("patreon")
    return await make_tenant(runtime)
