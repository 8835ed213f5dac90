"""Every error leaves as JSON: `{"error": {"code", "message"}}` (422s keep FastAPI's `detail` naming the field)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from membersync.errors import MembersyncError, Unauthorized


def _code(error: MembersyncError) -> str:
    return type(error).__name__


async def membersync_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, MembersyncError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    body = {"error": {"code": _code(error), "message": error.message}}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MembersyncError, membersync_error)
