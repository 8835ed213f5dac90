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
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from membersync.clock import SystemClock

HOST = "127.0.0.1"
BATCHES_PATH = "/batches"
MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 255
MAX_TIME_ZONE_LENGTH = 255
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_RECEIVED = 100_000
MAX_REMEMBERED_KEYS = 100_000
START_TIMEOUT_SECONDS = 10.0
# Field paths echo client-chosen keys; a bounded prefix keeps a hostile megabyte key out of the answer.
_ECHOED_KEY_LENGTH = 64
_SUBSCRIBER_KEYS = ("email", "name", "time_zone")
# Control characters and lone surrogates (which JSON's \uXXXX escapes can produce) are never member text.
_FORBIDDEN_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


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


class _Refused(Exception):
    """A request answered with an error naming the field at fault."""

    def __init__(self, field: str, problem: str, status_code: int = 422) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.status_code = status_code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self), "field": self.field}, status_code=self.status_code)


def _echoable(key: str) -> str:
    return key[:_ECHOED_KEY_LENGTH].encode("utf-8", "backslashreplace").decode("utf-8")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    # ValueError covers bad JSON, bad UTF-8 and over-long integers; RecursionError deep nesting.
    except (ValueError, RecursionError) as exc:
        raise _Refused("body", "must be valid JSON") from exc


def _object(value: object, path: str, keys: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Refused(path or "body", "must be a JSON object")
    for key in value:
        if key not in keys:
            raise _Refused(_join(path, _echoable(key)), "is not a known key")
    for key in keys:
        if key not in value:
            raise _Refused(_join(path, key), "is required")
    return value


def _items(value: object, path: str, max_items: int | None = None) -> list[object]:
    if not isinstance(value, list):
        raise _Refused(path, "must be a list")
    if not value:
        raise _Refused(path, "must not be empty")
    if max_items is not None and len(value) > max_items:
        raise _Refused(path, f"must hold at most {max_items} items")
    return value


def _text(value: object, path: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise _Refused(path, "must be a string")
    if len(value) > max_length:
        raise _Refused(path, f"must be at most {max_length} characters")
    if _FORBIDDEN_CHARACTER.search(value):
        raise _Refused(path, "must not contain control characters or lone surrogates")
    return value


def _check_email(value: object, path: str) -> None:
    if not _EMAIL.fullmatch(_text(value, path, MAX_EMAIL_LENGTH)):
        raise _Refused(path, "must be an address with one @ and no spaces")


@functools.lru_cache(maxsize=1024)
def _is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    # Hostile keys raise ValueError, ZoneInfoNotFoundError (a KeyError) or OSError; any failure means unknown.
    except Exception:
        return False
    return True


def _check_time_zone(value: object, path: str) -> None:
    if not _is_time_zone(_text(value, path, MAX_TIME_ZONE_LENGTH)):
        raise _Refused(path, "is not a known time zone")


def _batch_size(batch: object, path: str, max_batch_size: int) -> int:
    subscribers = _items(_object(batch, path, ("subscribers",))["subscribers"], f"{path}.subscribers", max_batch_size)
    for index, subscriber in enumerate(subscribers):
        where = f"{path}.subscribers[{index}]"
        fields = _object(subscriber, where, _SUBSCRIBER_KEYS)
        _check_email(fields["email"], f"{where}.email")
        _text(fields["name"], f"{where}.name", MAX_NAME_LENGTH)
        _check_time_zone(fields["time_zone"], f"{where}.time_zone")
    return len(subscribers)


def _batch_sizes(body: bytes, max_batch_size: int) -> list[int]:
    """The subscriber count of each batch of a valid push; raises _Refused naming the first bad field."""
    batches = _items(_object(_json(body), "", ("batches",))["batches"], "batches")
    return [_batch_size(batch, f"batches[{index}]", max_batch_size) for index, batch in enumerate(batches)]


def _check_authorization(header: str | None, api_key: str) -> None:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _Refused("authorization", "must be 'Bearer <api key>'", status_code=401)
    if not hmac.compare_digest(token.encode(), api_key.encode()):
        raise _Refused("authorization", "does not carry the API key", status_code=401)


def _idempotency_key(header: str | None) -> str | None:
    if header is not None and not 1 <= len(header) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise _Refused("idempotency_key", f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    return header


def _declares_more_than(content_length: str | None, limit: int) -> bool:
    if content_length is None or not (content_length.isascii() and content_length.isdigit()):
        return False
    digits = content_length.lstrip("0")
    # Comparing lengths first keeps int() away from digit strings long enough to make it raise.
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = _Refused("body", f"must be at most {limit} bytes", status_code=413)
    if _declares_more_than(request.headers.get("content-length"), limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


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
            _require(name in _SETTING_TYPES, _echoable(name), "is not a setting")
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
                raise _Refused("idempotency_key", "was already used with another body")
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
    _check_authorization(request.headers.get("authorization"), config.api_key)
    fault = destination._take_fault()
    if fault is not None:
        return fault
    body = await _read_body(request, config.max_body_bytes)
    key = _idempotency_key(request.headers.get("idempotency-key"))
    fingerprint = hashlib.sha256(body).digest()
    replay = destination._replay(key, fingerprint)
    if replay is not None:
        return replay
    batch_sizes = _batch_sizes(body, config.max_batch_size)
    return destination._accept(str(request.state.request_id), key, fingerprint, batch_sizes)


async def _post_batches(destination: PushDestination, request: Request) -> JSONResponse:
    config = destination._begin_push()
    await asyncio.sleep(config.latency_seconds)
    try:
        return await _handle_push(destination, request, config)
    except _Refused as refused:
        destination._count_rejected()
        return refused.response()


async def _post_config(destination: PushDestination, request: Request) -> JSONResponse:
    try:
        changes = _json(await _read_body(request, destination.config.max_body_bytes))
        if not isinstance(changes, dict):
            raise _Refused("body", "must be a JSON object")
        config = destination.configure(**changes)
    except _Refused as refused:
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


def _uvicorn_server(app: Starlette, port: int) -> uvicorn.Server:
    uvicorn_config = uvicorn.Config(
        app, host=HOST, port=port, log_level="warning", lifespan="off", access_log=False, ws="none"
    )
    return uvicorn.Server(uvicorn_config)


def _base_url(server: uvicorn.Server) -> str:
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{HOST}:{port}"


class PushDestinationServer:
    """The push destination served by uvicorn on 127.0.0.1, on an ephemeral port, from a daemon thread."""

    def __init__(
        self, config: PushDestinationConfig | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.destination = PushDestination(config, clock=clock)
        # Server.capture_signals() installs no handlers outside the main thread, so serving from a thread is safe.
        self._server = _uvicorn_server(create_push_destination_app(self.destination), port=0)
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None
        self.url: str | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def configure(self, **changes: Any) -> PushDestinationConfig:
        return self.destination.configure(**changes)

    def stats(self) -> PushDestinationStats:
        return self.destination.stats()

    def reset(self) -> None:
        self.destination.reset()

    def start(self) -> str:
        """Start serving; returns the URL of `POST /batches` once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("PushDestinationServer already started")
        self._thread = threading.Thread(target=self._server.run, name="push-destination-sandbox", daemon=True)
        self._thread.start()
        self._wait_started()
        self.base_url = _base_url(self._server)
        self.url = self.base_url + BATCHES_PATH
        return self.url

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("push destination emulator exited before it started")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"push destination emulator did not start within {START_TIMEOUT_SECONDS} s")
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

    def __enter__(self) -> PushDestinationServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


async def _serve_foreground(server: uvicorn.Server) -> None:
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise SystemExit("push destination emulator exited before it started")
        await asyncio.sleep(0.01)
    print(f"listening on {_base_url(server)}{BATCHES_PATH}", flush=True)
    await serving


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
    # uvicorn re-raises SIGINT after a graceful shutdown; that is the normal way to stop, not a crash.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_foreground(_uvicorn_server(app, port=args.port)))


if __name__ == "__main__":
    main()
