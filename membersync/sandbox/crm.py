"""A local HTTP emulator of a small CRM, for the demo, tests and benchmarks.

Member records are derived from a hash of the email, so the same email always yields the same record.
Latency, server errors (503) and throttling (429) can be injected, reproducibly via a seeded RNG, and
changed at run time through `POST /config`. The server only ever binds 127.0.0.1.

Run it in the foreground with `python -m membersync.sandbox.crm --port 0 --latency 0.05`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from membersync.sandbox.loopback import LoopbackServer, serve_in_foreground

MAX_EMAIL_LENGTH = 320
TIERS = ("bronze", "silver", "gold")
# Fixed anchor so `updated_at` never depends on when the emulator runs.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_UPDATED_AT_SPAN_SECONDS = 365 * 24 * 3600


@dataclass
class CrmConfig:
    """Behaviour of the emulated CRM."""

    latency_seconds: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_seconds: int = 0
    seed: int = 0
    inactive_share: float = 0.2

    def __post_init__(self) -> None:
        # Written as `not x >= 0` so that NaN is rejected too.
        if not self.latency_seconds >= 0:
            raise ValueError("latency_seconds must be >= 0")
        if not self.retry_after_seconds >= 0:
            raise ValueError("retry_after_seconds must be >= 0")
        for name in ("error_rate", "throttle_rate", "inactive_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


_FLOAT_FIELDS = frozenset({"latency_seconds", "error_rate", "throttle_rate", "inactive_share"})
_INT_FIELDS = frozenset({"retry_after_seconds", "seed"})


@dataclass
class _Stats:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    throttled: int = 0
    not_found: int = 0


class _CrmState:
    """Mutable state of one app; only touched from its event loop."""

    def __init__(self, config: CrmConfig) -> None:
        self.config = dataclasses.replace(config)
        self.rng = random.Random(config.seed)
        self.stats = _Stats()

    def reconfigure(self, changes: dict[str, Any]) -> None:
        self.config = dataclasses.replace(self.config, **changes)
        if "seed" in changes:
            self.rng = random.Random(self.config.seed)


def member_record(email: str, inactive_share: float = 0.2) -> dict[str, Any]:
    """The CRM's record for `email`; every field is derived from sha256(email)."""
    digest = hashlib.sha256(email.encode()).digest()
    active_draw = int.from_bytes(digest[0:4]) / 2**32
    updated_offset = int.from_bytes(digest[8:12]) % _UPDATED_AT_SPAN_SECONDS
    return {
        "id": f"crm_{digest.hex()[:12]}",
        "email": email,
        "is_active_member": active_draw >= inactive_share,
        "tier": TIERS[digest[4] % len(TIERS)],
        "total_donations": int.from_bytes(digest[5:8]) % 100_000,
        "updated_at": (_EPOCH - timedelta(seconds=updated_offset)).isoformat(),
    }


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _injected_fault(state: _CrmState) -> JSONResponse | None:
    # One draw per request keeps the fault sequence reproducible for a given seed whatever the rates are.
    draw = state.rng.random()
    config = state.config
    if draw < config.throttle_rate:
        state.stats.throttled += 1
        return _error(429, "rate_limited", {"Retry-After": str(config.retry_after_seconds)})
    if draw < config.throttle_rate + config.error_rate:
        state.stats.errors += 1
        return _error(503, "unavailable")
    return None


async def _get_member(state: _CrmState, request: Request) -> JSONResponse:
    state.stats.requests += 1
    await asyncio.sleep(state.config.latency_seconds)
    fault = _injected_fault(state)
    if fault is not None:
        return fault
    email: str = request.path_params["email"]
    if len(email) > MAX_EMAIL_LENGTH or "@" not in email:
        return _error(400, "invalid_email")
    if "missing" in email:
        state.stats.not_found += 1
        return _error(404, "not_found")
    state.stats.ok += 1
    return JSONResponse(member_record(email, state.config.inactive_share))


def _check_type(name: str, value: object) -> str | None:
    """Why `value` is unfit for field `name`, or None if it is fine."""
    if name not in _FLOAT_FIELDS | _INT_FIELDS:
        return f"unknown field {name!r}"
    is_int_field = name in _INT_FIELDS
    allowed: type | tuple[type, ...] = int if is_int_field else (int, float)
    # bool is an int subclass, but `true` is never a meaningful rate or count.
    if isinstance(value, bool) or not isinstance(value, allowed):
        return f"{name} must be {'an integer' if is_int_field else 'a number'}"
    return None


def _parse_config_changes(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    for name, value in body.items():
        problem = _check_type(name, value)
        if problem is not None:
            raise ValueError(problem)
    return {name: float(value) if name in _FLOAT_FIELDS else value for name, value in body.items()}


async def _post_config(state: _CrmState, request: Request) -> JSONResponse:
    try:
        changes = _parse_config_changes(await request.json())
        state.reconfigure(changes)
    except ValueError as exc:  # also covers malformed JSON (json.JSONDecodeError)
        return JSONResponse({"error": "invalid_config", "detail": str(exc)}, status_code=400)
    return JSONResponse(dataclasses.asdict(state.config))


async def _get_stats(state: _CrmState, request: Request) -> JSONResponse:
    return JSONResponse(dataclasses.asdict(state.stats))


def create_crm_app(config: CrmConfig) -> Starlette:
    """A Starlette app emulating the CRM; `config` is copied, change it later with `POST /config`."""
    state = _CrmState(config)

    async def get_member(request: Request) -> JSONResponse:
        return await _get_member(state, request)

    async def get_stats(request: Request) -> JSONResponse:
        return await _get_stats(state, request)

    async def post_config(request: Request) -> JSONResponse:
        return await _post_config(state, request)

    return Starlette(
        routes=[
            Route("/members/{email}", get_member, methods=["GET"]),
            Route("/stats", get_stats, methods=["GET"]),
            Route("/config", post_config, methods=["POST"]),
        ]
    )


class CrmServer(LoopbackServer):
    """The CRM emulator served by uvicorn on 127.0.0.1 from a background daemon thread."""

    def __init__(self, config: CrmConfig | None = None) -> None:
        super().__init__(create_crm_app(config or CrmConfig()), description="CRM emulator", thread_name="crm-sandbox")
        self.url: str | None = None

    def start(self) -> str:
        """Start serving; returns the base URL once the server accepts connections."""
        self.url = super().start()
        return self.url

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the CRM emulator on 127.0.0.1 in the foreground.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 lets the OS choose")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 503")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    parser.add_argument("--retry-after", type=int, default=0, help="Retry-After seconds on 429 answers")
    parser.add_argument("--seed", type=int, default=0, help="seed for the fault-injection RNG")
    parser.add_argument("--inactive-share", type=float, default=0.2, help="share of inactive members")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until interrupted; prints `listening on <url>` once it accepts connections."""
    args = _parse_args(argv)
    try:
        config = CrmConfig(
            latency_seconds=args.latency,
            error_rate=args.error_rate,
            throttle_rate=args.throttle_rate,
            retry_after_seconds=args.retry_after,
            seed=args.seed,
            inactive_share=args.inactive_share,
        )
    except ValueError as exc:
        raise SystemExit(f"invalid option: {exc}") from exc
    serve_in_foreground(create_crm_app(config), port=args.port, description="CRM emulator")


if __name__ == "__main__":
    main()
