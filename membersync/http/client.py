"""Outbound HTTP for sync providers: one request id per call, bounded retries, structured logs."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import structlog
from structlog.typing import FilteringBoundLogger

from membersync.clock import SystemClock

REQUEST_ID_HEADER = "X-Request-ID"

_log: FilteringBoundLogger = structlog.get_logger("membersync.http")


class HttpError(Exception):
    """A call to an external platform failed: an error status, or no response at all (`status_code` is None).

    `retry_after` is the failed response's Retry-After header, if it sent one.
    """

    def __init__(
        self,
        method: str,
        url: str,
        status_code: int | None,
        detail: str | None = None,
        *,
        retry_after: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status_code = status_code
        self.retry_after = retry_after
        outcome = "no response" if status_code is None else str(status_code)
        suffix = f": {' '.join(detail.split())}" if detail else ""
        self.message = f"{method} {url} -> {outcome}{suffix}"
        super().__init__(self.message)

    @property
    def is_retryable(self) -> bool:
        return self.status_code is None or _is_retryable_status(self.status_code)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    min_retry_after: float = 0.1
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.min_retry_after) < 0:
            raise ValueError("delays must not be negative")
        if self.min_retry_after > self.max_retry_after:
            raise ValueError("min_retry_after must not exceed max_retry_after")


DEFAULT_POLICY = RetryPolicy()
_SYSTEM_CLOCK = SystemClock()


def retry_delay(policy: RetryPolicy, attempt: int, retry_after: str | None, *, now: datetime) -> float:
    """Seconds to wait after failed `attempt` (1-based): the server's Retry-After, clamped, else exponential."""
    requested = _parse_retry_after(retry_after, now) if retry_after is not None else None
    if requested is None:
        # The exponent is capped only so an absurd attempt number cannot overflow a float.
        return min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt - 1, 64))
    # Clamped from below too: `Retry-After: 0` (or a past date) must not turn into a tight retry loop.
    return min(policy.max_retry_after, max(policy.min_retry_after, requested))


def _parse_retry_after(value: str, now: datetime) -> float | None:
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until(value, now)
    return seconds if math.isfinite(seconds) else None


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        moment: datetime = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    # HTTP dates are always GMT; parsedate gives a naive datetime for a "-0000" zone.
    return (_as_utc(moment) - _as_utc(now)).total_seconds()


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _is_retryable_status(status_code: int) -> bool:
    return status_code in (408, 429) or 500 <= status_code <= 599


def build_async_client(*, timeout: float = 10.0, max_connections: int = 100) -> httpx.AsyncClient:
    """An AsyncClient for HttpClient; it ignores proxy settings from the environment."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        trust_env=False,
    )


class HttpClient:
    """Sends requests through an injected AsyncClient, retrying transient failures per a RetryPolicy."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = _SYSTEM_CLOCK.now,
        platform: str = "http",
    ) -> None:
        self._client = client
        self._policy = policy
        self._sleep = sleep
        self._now = now
        self._platform = platform
        self.retries = 0

    async def send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request and whatever response it gets, error statuses included: for callers that retry on a
        schedule of their own (a push batch's job). Raises httpx errors when no response comes."""
        return await self._client.request(method, url, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send the request; return the first non-error response or raise HttpError."""
        headers = httpx.Headers(kwargs.pop("headers", None))
        # A caller-supplied id is kept so a correlation id can flow through to the platform.
        request_id = headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        headers[REQUEST_ID_HEADER] = request_id
        log = _log.bind(method=method, url=url, request_id=request_id, platform=self._platform)
        attempt = 1
        while True:
            try:
                return await self._attempt(log.bind(attempt=attempt), method, url, headers, kwargs)
            except HttpError as error:
                if not error.is_retryable or attempt >= self._policy.max_attempts:
                    raise
                await self._wait(log.bind(attempt=attempt), attempt, error.retry_after)
            attempt += 1

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(self, url: str, **kwargs: Any) -> Any:
        """GET `url` and decode its JSON body."""
        response = await self.request("GET", url, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise HttpError("GET", url, response.status_code, "invalid JSON in response body") from exc

    async def _attempt(
        self, log: FilteringBoundLogger, method: str, url: str, headers: httpx.Headers, kwargs: dict[str, Any]
    ) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            log.warning("http.request", status=None, duration_ms=_elapsed_ms(started), error=repr(exc))
            raise HttpError(method, url, None, f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if response.is_error:
            log.warning("http.request", status=status, duration_ms=_elapsed_ms(started))
            raise HttpError(method, url, status, retry_after=response.headers.get("Retry-After"))
        log.debug("http.request", status=status, duration_ms=_elapsed_ms(started))
        return response

    async def _wait(self, log: FilteringBoundLogger, attempt: int, retry_after: str | None) -> None:
        delay = retry_delay(self._policy, attempt, retry_after, now=self._now())
        self.retries += 1
        log.warning("http.retry", delay=delay, retry_after=retry_after)
        await self._sleep(delay)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
