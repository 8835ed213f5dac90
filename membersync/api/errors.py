"""Every error leaves as JSON: `{"error": {"code", "message"}}` (422s keep FastAPI's `detail` naming the field)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from membersync.errors import MembersyncError, Unauthorized


def _code(error: MembersyncError) -> str:
    return type(error).__name__


async def membersync_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, MembersyncError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    body = {"error": {"code": _code(error), "message": error.message}}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 body, without echoing the input: it may be huge, deeply nested or hostile."""
    assert isinstance(error, RequestValidationError)
    details = [{key: item[key] for key in ("type", "loc", "msg") if key in item} for item in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(details)}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MembersyncError, membersync_error)
    app.add_exception_handler(RequestValidationError, validation_error)
