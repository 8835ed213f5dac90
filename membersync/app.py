"""The FastAPI application: members API and login, on one runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from membersync.api.errors import install_error_handlers
from membersync.api.limits import BodySizeLimit
from membersync.audit.endpoints import router as audit_router
from membersync.conflict.endpoints import router as conflict_router
from membersync.duplicate.endpoints import router as duplicate_router
from membersync.identity.endpoints import router as identity_router
from membersync.login.endpoints import router as login_router
from membersync.member.endpoints import router as member_router
from membersync.runtime import Runtime
from membersync.tracker.endpoints import router as tracker_router


def create_app(runtime: Runtime, *, owns_runtime: bool = False) -> FastAPI:
    """Build the app around a runtime; with `owns_runtime`, the app closes it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_runtime:
            await runtime.aclose()

    app = FastAPI(title="membersync", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    app.include_router(identity_router)
    app.include_router(member_router)
    app.include_router(login_router)
    app.include_router(tracker_router)
    app.include_router(conflict_router)
    app.include_router(audit_router)
    app.include_router(duplicate_router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
