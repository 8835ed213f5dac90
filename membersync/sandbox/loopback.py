"""Serving a sandbox emulator's ASGI app with uvicorn on 127.0.0.1, from a daemon thread or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import uvicorn
from starlette.types import ASGIApp

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 10.0


def uvicorn_server(app: ASGIApp, port: int) -> uvicorn.Server:
    """A quiet uvicorn server for `app` on 127.0.0.1; port 0 lets the OS choose."""
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="off", access_log=False, ws="none")
    return uvicorn.Server(config)


def base_url(server: uvicorn.Server) -> str:
    """The `http://127.0.0.1:<port>` a started server listens on."""
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{HOST}:{port}"


class LoopbackServer:
    """An ASGI app served by uvicorn on 127.0.0.1 from a daemon thread; port 0 picks an ephemeral port.

    `description` names the emulator in errors ("CRM emulator did not start within 10.0 s").
    """

    def __init__(self, app: ASGIApp, *, description: str, thread_name: str, port: int = 0) -> None:
        # Server.capture_signals() installs no handlers outside the main thread, so serving from a thread is safe.
        self._server = uvicorn_server(app, port=port)
        self._description = description
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> str:
        """Start serving; returns the base URL once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._thread = threading.Thread(target=self._server.run, name=self._thread_name, daemon=True)
        self._thread.start()
        self._wait_started()
        self.base_url = base_url(self._server)
        return self.base_url

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError(f"{self._description} exited before it started")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._description} did not start within {START_TIMEOUT_SECONDS} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread; safe to call more than once."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=START_TIMEOUT_SECONDS)


async def _serve_foreground(server: uvicorn.Server, description: str, path: str) -> None:
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise SystemExit(f"{description} exited before it started")
        await asyncio.sleep(0.01)
    print(f"listening on {base_url(server)}{path}", flush=True)
    await serving


def serve_in_foreground(app: ASGIApp, *, port: int, description: str, path: str = "") -> None:
    """Serve `app` until interrupted; prints `listening on <base URL><path>` once it accepts connections."""
    # uvicorn re-raises SIGINT after a graceful shutdown; that is the normal way to stop, not a crash.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_foreground(uvicorn_server(app, port=port), description, path))
