"""HttpClient and retry_delay against httpx.MockTransport; no network, no real sleeping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from structlog.testing import capture_logs

from membersync.http import REQUEST_ID_HEADER, HttpClient, HttpError, RetryPolicy, build_async_client, retry_delay

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
URL = "http://platform.test/members"
POLICY = RetryPolicy()

Step = int | httpx.Response | Exception


class Script:
    """A MockTransport handler that plays one scripted step per request and records the requests."""

    def __init__(self, steps: Iterable[Step]) -> None:
        self._steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self._steps, f"unexpected request #{len(self.requests)}"
        step = self._steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return httpx.Response(step) if isinstance(step, int) else step


@dataclass
class Harness:
    client: HttpClient
    script: Script
    delays: list[float] = field(default_factory=list)


@asynccontextmanager
async def harness(*steps: Step, policy: RetryPolicy = POLICY) -> AsyncIterator[Harness]:
    script = Script(steps)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    async with httpx.AsyncClient(transport=httpx.MockTransport(script)) as inner:
        client = HttpClient(inner, policy=policy, sleep=sleep, now=lambda: NOW, platform="test")
        yield Harness(client, script, delays)


def too_many(retry_after: str) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": retry_after})


async def test_success_on_first_try() -> None:
    async with harness(httpx.Response(200, json={"ok": True})) as h:
        response = await h.client.request("GET", URL)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert len(h.script.requests) == 1
    assert h.delays == []
    assert h.client.retries == 0


async def test_retries_server_errors_with_exponential_delays() -> None:
    async with harness(503, 503, 200) as h:
        response = await h.client.request("GET", URL)
    assert response.status_code == 200
    assert h.delays == pytest.approx([0.2, 0.4])
    assert h.client.retries == 2


async def test_retries_counter_accumulates_across_calls() -> None:
    async with harness(500, 200, 502, 200) as h:
        await h.client.request("GET", URL)
        await h.client.request("GET", URL)
    assert h.client.retries == 2


async def test_gives_up_after_max_attempts() -> None:
    async with harness(503, 503, 503) as h:
        with pytest.raises(HttpError) as caught:
            await h.client.request("GET", URL)
    assert caught.value.status_code == 503
    assert caught.value.url == URL
    assert caught.value.is_retryable
    assert str(caught.value) == f"GET {URL} -> 503"
    assert len(h.script.requests) == 3
    assert h.delays == pytest.approx([0.2, 0.4])
    assert h.client.retries == 2


async def test_client_error_is_not_retried() -> None:
    async with harness(404) as h:
        with pytest.raises(HttpError) as caught:
            await h.client.request("GET", URL)
    assert caught.value.status_code == 404
    assert not caught.value.is_retryable
    assert len(h.script.requests) == 1
    assert h.delays == []
    assert h.client.retries == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("0", 0.1, id="zero-is-raised-to-minimum"),
        pytest.param("7", 7.0, id="seconds"),
        pytest.param("99999", 30.0, id="clamped-to-maximum"),
        pytest.param(format_datetime(NOW + timedelta(seconds=5), usegmt=True), 5.0, id="http-date"),
        pytest.param("soon-ish", 0.2, id="garbage-falls-back-to-exponential"),
    ],
)
async def test_retry_after_header(header: str, expected: float) -> None:
    async with harness(too_many(header), 200) as h:
        response = await h.client.request("GET", URL)
    assert response.status_code == 200
    assert h.delays == pytest.approx([expected])


async def test_transport_errors_are_retried() -> None:
    async with harness(httpx.ConnectError("refused"), httpx.ConnectError("refused"), 200) as h:
        response = await h.client.request("GET", URL)
    assert response.status_code == 200
    assert h.delays == pytest.approx([0.2, 0.4])
    assert h.client.retries == 2


async def test_transport_errors_exhausted_raise_chained_http_error() -> None:
    timeouts = [httpx.ReadTimeout("slow") for _ in range(3)]
    async with harness(*timeouts) as h:
        with pytest.raises(HttpError) as caught:
            await h.client.request("POST", URL, json={"a": 1})
    assert caught.value.status_code is None
    assert caught.value.is_retryable
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert str(caught.value).startswith(f"POST {URL} -> no response")
    assert len(h.script.requests) == 3


async def test_request_id_is_the_same_on_every_attempt() -> None:
    async with harness(503, 503, 200) as h:
        await h.client.request("GET", URL, headers={"Accept": "application/json"})
    ids = {request.headers[REQUEST_ID_HEADER] for request in h.script.requests}
    assert len(ids) == 1
    (request_id,) = ids
    assert len(request_id) == 32
    int(request_id, 16)
    assert all(request.headers["Accept"] == "application/json" for request in h.script.requests)


async def test_each_call_gets_a_new_request_id() -> None:
    async with harness(200, 200) as h:
        await h.client.request("GET", URL)
        await h.client.request("GET", URL)
    first, second = (request.headers[REQUEST_ID_HEADER] for request in h.script.requests)
    assert first != second


async def test_caller_supplied_request_id_is_kept() -> None:
    async with harness(500, 200) as h:
        await h.client.request("GET", URL, headers={REQUEST_ID_HEADER: "corr-1"})
    assert [request.headers[REQUEST_ID_HEADER] for request in h.script.requests] == ["corr-1", "corr-1"]


async def test_get_json_decodes_body() -> None:
    async with harness(httpx.Response(200, json=[{"id": 1}])) as h:
        assert await h.client.get_json(URL, params={"page": 2}) == [{"id": 1}]
    assert h.script.requests[0].url.params["page"] == "2"


async def test_get_json_rejects_non_json_body() -> None:
    async with harness(httpx.Response(200, text="<html>oops</html>")) as h:
        with pytest.raises(HttpError, match="invalid JSON") as caught:
            await h.client.get_json(URL)
    assert caught.value.status_code == 200
    assert isinstance(caught.value.__cause__, ValueError)


async def test_logs_each_attempt_and_retry() -> None:
    async with harness(503, 200) as h:
        with capture_logs() as logs:
            await h.client.request("GET", URL)
    requests = [entry for entry in logs if entry["event"] == "http.request"]
    retries = [entry for entry in logs if entry["event"] == "http.retry"]
    assert [(entry["status"], entry["attempt"], entry["log_level"]) for entry in requests] == [
        (503, 1, "warning"),
        (200, 2, "debug"),
    ]
    assert {entry["request_id"] for entry in requests} == {h.script.requests[0].headers[REQUEST_ID_HEADER]}
    assert all(entry["platform"] == "test" and entry["method"] == "GET" and entry["url"] == URL for entry in requests)
    assert all(entry["duration_ms"] >= 0 for entry in requests)
    assert [(entry["delay"], entry["log_level"]) for entry in retries] == [(pytest.approx(0.2), "warning")]


async def test_single_attempt_policy_never_retries() -> None:
    async with harness(503, policy=RetryPolicy(max_attempts=1)) as h:
        with pytest.raises(HttpError):
            await h.client.request("GET", URL)
    assert h.delays == []


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (5, 3.2), (6, 5.0), (100, 5.0), (10_000, 5.0)],
)
def test_retry_delay_is_exponential_and_capped(attempt: int, expected: float) -> None:
    assert retry_delay(POLICY, attempt, None, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0.1),
        ("  7 ", 7.0),
        ("2.5", 2.5),
        ("-3", 0.1),
        ("99999", 30.0),
        (format_datetime(NOW + timedelta(seconds=5), usegmt=True), 5.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.1),
        (format_datetime(NOW + timedelta(days=1), usegmt=True), 30.0),
        ("Thu, 01 Jan 2026 12:00:09 -0000", 9.0),
    ],
)
def test_retry_delay_honours_retry_after(header: str, expected: float) -> None:
    assert retry_delay(POLICY, 1, header, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("header", ["", "later", "nan", "inf", "Mon, 99 Foo 2026"])
def test_retry_delay_ignores_unparseable_retry_after(header: str) -> None:
    assert retry_delay(POLICY, 2, header, now=NOW) == pytest.approx(0.4)


def test_retry_delay_respects_custom_bounds() -> None:
    policy = RetryPolicy(min_retry_after=1.0, max_retry_after=2.0)
    assert retry_delay(policy, 1, "0", now=NOW) == 1.0
    assert retry_delay(policy, 1, "60", now=NOW) == 2.0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(None, True), (408, True), (429, True), (500, True), (599, True), (400, False), (401, False), (404, False)],
)
def test_http_error_retryability(status: int | None, retryable: bool) -> None:
    assert HttpError("GET", URL, status).is_retryable is retryable


def test_http_error_message_is_one_line() -> None:
    error = HttpError("GET", "http://x/y", 503, "line one\nline two")
    assert str(error) == "GET http://x/y -> 503: line one line two"
    assert error.message == str(error)


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(base_delay=-1)


async def test_build_async_client_settings() -> None:
    async with build_async_client(timeout=3.0, max_connections=7) as client:
        assert client.timeout == httpx.Timeout(3.0)
        assert client.trust_env is False
