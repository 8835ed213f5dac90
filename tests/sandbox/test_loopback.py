"""Tests for serving an ASGI app on loopback from a daemon thread."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from membersync.sandbox.loopback import LoopbackServer


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _server() -> LoopbackServer:
    app = Starlette(routes=[Route("/", _hello)])
    return LoopbackServer(app, description="test emulator", thread_name="loopback-test")


def test_serves_on_an_ephemeral_loopback_port_until_stopped() -> None:
    server = _server()
    url = server.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert server.base_url == url
        assert server.thread is not None
        assert server.thread.name == "loopback-test"
        assert server.thread.daemon
        assert httpx.get(url).text == "hello"
    finally:
        server.stop()
    assert not server.thread.is_alive()
    server.stop()


def test_starting_twice_is_refused() -> None:
    server = _server()
    server.start()
    try:
        with pytest.raises(RuntimeError, match="LoopbackServer already started"):
            server.start()
    finally:
        server.stop()


def test_stop_before_start_does_nothing() -> None:
    server = _server()
    server.stop()
    assert server.thread is None
    assert server.base_url is None
