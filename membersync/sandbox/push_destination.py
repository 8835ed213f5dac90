"""A local HTTP emulator of a push destination: a third-party API that receives batches of members.

`POST /batches` takes `{"batches": [{"subscribers": [{"email", "name", "time_zone"}, ...]}, ...]}`, at most
`max_batch_size` subscribers per batch, with `Authorization: Bearer <api_key>`. It handles a request in
this order, and the first step that answers ends it:

1. wait `latency_seconds`;
2. authentication: 401;
3. injected faults: while `throttle_next` > 0, 429 with `Retry-After`; else while `fail_next` > 0,
   `fail_status`; each answer uses up one from its counter;
4. body size: 413 when Content-Length or the bytes actually read exceed `max_body_bytes`;
5. `Idempotency-Key`: a key already accepted with the same body replays the original 202 with
   `Idempotent-Replayed: true` and is not counted again; with another body, 422;
6. validation: 422 `{"error", "field"}`, the field named by its path, e.g. `batches[0].subscribers[3].email`;
7. acceptance: 202 `{"accepted_batches": n, "accepted_subscribers": m}`.

Every response, errors included, carries a server-generated `X-Request-ID` (`dst-000001`, ...). Only
accepted pushes are remembered for idempotency. `GET /stats`, `POST /reset` and `POST /config` inspect and
steer the emulator, as `PushDestination` does from Python. They take no key: the server only ever binds
127.0.0.1.

Run it in the foreground with `python -m membersync.sandbox.push_destination --port 0 --api-key KEY`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from membersync.clock import SystemClock
from membersync.sandbox import push_payload as payload
from membersync.sandbox.loopback import LoopbackServer, serve_in_foreground

BATCHES_PATH = "/batches"
MAX_RECEIVED = 100_000
MAX_REMEMBERED_KEYS = 100_000


class InvalidConfig(ValueError):
    """A setting of the push destination has a wrong type or value; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field


# Accepted types per setting; bool is refused separately because it is an int subclass.
_SETTING_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "api_key": ((str,), "a string"),
    "latency_seconds": ((int, float), "a number"),
    "fail_next": ((int,), "an integer"),
    "fail_status": ((int,), "an integer"),
    "throttle_next": ((int,), "an integer"),
    "retry_after_seconds": ((int,), "an integer"),
    "max_batch_size": ((int,), "an integer"),
    "max_body_bytes": ((int,), "an integer"),
}


def _require(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise InvalidConfig(field, problem)


@dataclass(frozen=True)
class PushDestinationConfig:
    """Behaviour of the emulated push destination; every field is checked on construction."""

    api_key: str = "sandbox-key"
    latency_seconds: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    throttle_next: int = 0
    retry_after_seconds: int = 0
    max_batch_size: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for name, (types, description) in _SETTING_TYPES.items():
            value = getattr(self, name)
            _require(not isinstance(value, bool) and isinstance(value, types), name, f"must be {description}")
        # It travels in a header, so only visible ASCII is usable.
        _require(self.api_key != "" and all("!" <= c <= "~" for c in self.api_key), "api_key", "must be visible ASCII")
        _require(math.isfinite(self.latency_seconds) and self.latency_seconds >= 0, "latency_seconds", "must be >= 0")
        for name in ("fail_next", "throttle_next", "retry_after_seconds"):
            _require(getattr(self, name) >= 0, name, "must be >= 0")
        _require(400 <= self.fail_status <= 599, "fail_status", "must be a 4xx or 5xx status")
        for name in ("max_batch_size", "max_body_bytes"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")


@dataclass(frozen=True)
class ReceivedPush:
    """One accepted push."""

    at: datetime
    request_id: str
    idempotency_key: str | None
    subscribers: int

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "at": self.at.isoformat()}


@dataclass
class PushDestinationStats:
    """What `POST /batches` saw since the start or the last reset; `received` is oldest first, newest kept."""

    requests: int = 0
    accepted_requests: int = 0
    accepted_batches: int = 0
    accepted_subscribers: int = 0
    replayed: int = 0
    rejected: int = 0
    throttled: int = 0
    failed: int = 0
    received: tuple[ReceivedPush, ...] = ()

    def as_json(self) -> dict[str, Any]:
        counts = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**counts, "received": [push.as_json() for push in self.received]}


@dataclass(frozen=True)
class _Accepted:
    fingerprint: bytes
    body: dict[str, int]


class PushDestination:
    """Settings, counters and idempotency memory of one emulator, shared by its routes and Python callers.

    A lock guards them: the routes run on the server's event loop while tests call in from their own thread.
    """

    def __init__(
        self,
        config: PushDestinationConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        received_limit: int = MAX_RECEIVED,
    ) -> None:
        self._lock = threading.Lock()
        self._config = config or PushDestinationConfig()
        self._clock = clock or SystemClock().now
        self._last_request_number = 0
        self._counters = PushDestinationStats()
        self._received: deque[ReceivedPush] = deque(maxlen=received_limit)
        self._accepted: dict[str, _Accepted] = {}

    @property
    def config(self) -> PushDestinationConfig:
        with self._lock:
            return self._config

    def configure(self, **changes: Any) -> PushDestinationConfig:
        """Apply all `changes` or none; raises InvalidConfig naming the first bad setting."""
        for name in changes:
            _require(name in _SETTING_TYPES, payload.echoable(name), "is not a setting")
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            return self._config

    def stats(self) -> PushDestinationStats:
        with self._lock:
            return dataclasses.replace(self._counters, received=tuple(self._received))

    def reset(self) -> None:
        """Forget counters, received pushes and idempotency keys; settings and request ids carry on."""
        with self._lock:
            self._counters = PushDestinationStats()
            self._received.clear()
            self._accepted.clear()

    def _next_request_id(self) -> str:
        with self._lock:
            self._last_request_number += 1
            return f"dst-{self._last_request_number:06d}"

    def _begin_push(self) -> PushDestinationConfig:
        with self._lock:
            self._counters.requests += 1
            return self._config

    def _count_rejected(self) -> None:
        with self._lock:
            self._counters.rejected += 1

    def _take_fault(self) -> JSONResponse | None:
        with self._lock:
            config = self._config
            if config.throttle_next > 0:
                self._config = dataclasses.replace(config, throttle_next=config.throttle_next - 1)
                self._counters.throttled += 1
                headers = {"Retry-After": str(config.retry_after_seconds)}
                return JSONResponse({"error": "throttled"}, status_code=429, headers=headers)
            if config.fail_next > 0:
                self._config = dataclasses.replace(config, fail_next=config.fail_next - 1)
                self._counters.failed += 1
                return JSONResponse({"error": "injected failure"}, status_code=config.fail_status)
        return None

    def _replay(self, key: str | None, fingerprint: bytes) -> JSONResponse | None:
        with self._lock:
            accepted = None if key is None else self._accepted.get(key)
            if accepted is None:
                return None
            if accepted.fingerprint != fingerprint:
                raise payload.Refused("idempotency_key", "was already used with another body")
            self._counters.replayed += 1
        return JSONResponse(accepted.body, status_code=202, headers={"Idempotent-Replayed": "true"})

    def _accept(self, request_id: str, key: str | None, fingerprint: bytes, batch_sizes: list[int]) -> JSONResponse:
        body = {"accepted_batches": len(batch_sizes), "accepted_subscribers": sum(batch_sizes)}
        with self._lock:
            self._counters.accepted_requests += 1
            self._counters.accepted_batches += body["accepted_batches"]
            self._counters.accepted_subscribers += body["accepted_subscribers"]
            self._received.append(ReceivedPush(self._clock(), request_id, key, body["accepted_subscribers"]))
            if key is not None:
                self._accepted[key] = _Accepted(fingerprint, body)
                if len(self._accepted) > MAX_REMEMBERED_KEYS:
                    del self._accepted[next(iter(self._accepted))]
        return JSONResponse(body, status_code=202)


class _RequestIdMiddleware:
    """Stamps every response with the `X-Request-ID` that handlers read from `request.state.request_id`."""

    def __init__(self, app: ASGIApp, destination: PushDestination) -> None:
        self.app = app
        self.destination = destination

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.destination._next_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        await self.app(scope, receive, send_with_request_id)


async def _handle_push(destination: PushDestination, request: Request, config: PushDestinationConfig) -> JSONResponse:
    payload.check_authorization(request.headers.get("authorization"), config.api_key)
    fault = destination._take_fault()
    if fault is not None:
        return fault
    body = await payload.read_body(request, config.max_body_bytes)
    key = payload.idempotency_key(request.headers.get("idempotency-key"))
    fingerprint = hashlib.sha256(body).digest()
    replay = destination._replay(key, fingerprint)
    if replay is not None:
        return replay
    batch_sizes = payload.batch_sizes(body, config.max_batch_size)
    return destination._accept(str(request.state.request_id), key, fingerprint, batch_sizes)


async def _post_batches(destination: PushDestination, request: Request) -> JSONResponse:
    config = destination._begin_push()
    await asyncio.sleep(config.latency_seconds)
    try:
        return await _handle_push(destination, request, config)
    except payload.Refused as refused:
        destination._count_rejected()
        return refused.response()


async def _post_config(destination: PushDestination, request: Request) -> JSONResponse:
    try:
        changes = payload.parse_json(await payload.read_body(request, destination.config.max_body_bytes))
        if not isinstance(changes, dict):
            raise payload.Refused("body", "must be a JSON object")
        config = destination.configure(**changes)
    except payload.Refused as refused:
        return refused.response()
    except InvalidConfig as exc:
        return JSONResponse({"error": str(exc), "field": exc.field}, status_code=422)
    return JSONResponse(dataclasses.asdict(config))


def create_push_destination_app(destination: PushDestination) -> Starlette:
    """A Starlette app serving `destination`; it works on the destination's state, not on a copy."""

    async def post_batches(request: Request) -> JSONResponse:
        return await _post_batches(destination, request)

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse(destination.stats().as_json())

    async def post_reset(request: Request) -> JSONResponse:
        destination.reset()
        return JSONResponse({"reset": True})

    async def post_config(request: Request) -> JSONResponse:
        return await _post_config(destination, request)

    return Starlette(
        routes=[
            Route(BATCHES_PATH, post_batches, methods=["POST"]),
            Route("/stats", get_stats, methods=["GET"]),
            Route("/reset", post_reset, methods=["POST"]),
            Route("/config", post_config, methods=["POST"]),
        ],
        middleware=[Middleware(_RequestIdMiddleware, destination=destination)],
    )


class PushDestinationServer(LoopbackServer):
    """The push destination served by uvicorn on 127.0.0.1, on an ephemeral port, from a daemon thread."""

    def __init__(
        self, config: PushDestinationConfig | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.destination = PushDestination(config, clock=clock)
        super().__init__(
            create_push_destination_app(self.destination),
            description="push destination emulator",
            thread_name="push-destination-sandbox",
        )
        self.url: str | None = None

    def configure(self, **changes: Any) -> PushDestinationConfig:
        return self.destination.configure(**changes)

    def stats(self) -> PushDestinationStats:
        return self.destination.stats()

    def reset(self) -> None:
        self.destination.reset()

    def start(self) -> str:
        """Start serving; returns the URL of `POST /batches` once the server accepts connections."""
        self.url = super().start() + BATCHES_PATH
        return self.url

    def __enter__(self) -> PushDestinationServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the push destination emulator on 127.0.0.1 in the foreground.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 lets the OS choose")
    parser.add_argument(
        "--api-key", default=PushDestinationConfig.api_key, help="the key expected as 'Authorization: Bearer KEY'"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each push is answered")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until interrupted; prints `listening on <url of POST /batches>` once it is up."""
    args = _parse_args(argv)
    try:
        config = PushDestinationConfig(api_key=args.api_key, latency_seconds=args.latency)
    except InvalidConfig as exc:
        raise SystemExit(f"invalid option: {exc}") from exc
    app = create_push_destination_app(PushDestination(config))
    serve_in_foreground(app, port=args.port, description="push destination emulator", path=BATCHES_PATH)


if __name__ == "__main__":
    main()
