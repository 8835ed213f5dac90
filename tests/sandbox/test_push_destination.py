"""Tests for the push destination emulator: its routes through ASGI, and serving it on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from membersync.clock import FrozenClock
from membersync.sandbox.push_destination import (
    InvalidConfig,
    PushDestination,
    PushDestinationConfig,
    PushDestinationServer,
    create_push_destination_app,
)
from tests.sandbox.pushes import AUTHORIZATION, MEGABYTE, assert_refused, make_push


async def test_push_of_one_subscriber_is_accepted(client: httpx.AsyncClient, destination: PushDestination) -> None:
    response = await client.post("/batches", json=make_push(1))
    assert response.status_code == 202
    assert response.json() == {"accepted_batches": 1, "accepted_subscribers": 1}
    assert response.headers["X-Request-ID"] == "dst-000001"
    stats = destination.stats()
    assert (stats.requests, stats.accepted_requests, stats.accepted_subscribers) == (1, 1, 1)


async def test_full_batches_are_accepted(client: httpx.AsyncClient, destination: PushDestination) -> None:
    response = await client.post("/batches", json=make_push(1000, 1000, 1))
    assert response.status_code == 202
    assert response.json() == {"accepted_batches": 3, "accepted_subscribers": 2001}
    assert destination.stats().accepted_batches == 3


async def test_same_key_and_body_replays_the_original_answer(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    headers = {"Idempotency-Key": "push-1"}
    first = await client.post("/batches", json=make_push(3), headers=headers)
    again = await client.post("/batches", json=make_push(3), headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    stats = destination.stats()
    assert (stats.accepted_requests, stats.accepted_subscribers, stats.replayed) == (1, 3, 1)
    assert [push.idempotency_key for push in stats.received] == ["push-1"]


async def test_same_key_with_another_body_is_refused(client: httpx.AsyncClient, destination: PushDestination) -> None:
    headers = {"Idempotency-Key": "push-1"}
    await client.post("/batches", json=make_push(3), headers=headers)
    response = await client.post("/batches", json=make_push(4), headers=headers)
    assert_refused(response, 422, "idempotency_key")
    assert destination.stats().accepted_subscribers == 3


async def test_concurrent_pushes_with_one_key_are_accepted_once(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    pushes = [client.post("/batches", json=make_push(2), headers={"Idempotency-Key": "k"}) for _ in range(10)]
    responses = await asyncio.gather(*pushes)
    assert {response.status_code for response in responses} == {202}
    stats = destination.stats()
    assert (stats.accepted_requests, stats.replayed) == (1, 9)


async def test_refused_push_leaves_its_key_free(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "push-1"}
    refused = await client.post("/batches", json=make_push(1001), headers=headers)
    accepted = await client.post("/batches", json=make_push(1), headers=headers)
    assert refused.status_code == 422
    assert accepted.status_code == 202
    assert "Idempotent-Replayed" not in accepted.headers


@pytest.mark.parametrize("fail_status", [503, 500, 400])
async def test_fail_next_fails_that_many_pushes(
    client: httpx.AsyncClient, destination: PushDestination, fail_status: int
) -> None:
    destination.configure(fail_next=2, fail_status=fail_status)
    statuses = [(await client.post("/batches", json=make_push(1))).status_code for _ in range(3)]
    assert statuses == [fail_status, fail_status, 202]
    stats = destination.stats()
    assert (stats.failed, stats.accepted_requests, stats.rejected) == (2, 1, 0)
    assert destination.config.fail_next == 0


@pytest.mark.parametrize("retry_after", [0, 7])
async def test_throttle_next_answers_429_with_retry_after(
    client: httpx.AsyncClient, destination: PushDestination, retry_after: int
) -> None:
    destination.configure(throttle_next=1, retry_after_seconds=retry_after)
    throttled = await client.post("/batches", json=make_push(1))
    accepted = await client.post("/batches", json=make_push(1))
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == str(retry_after)
    assert "X-Request-ID" in throttled.headers
    assert accepted.status_code == 202
    assert (destination.stats().throttled, destination.stats().accepted_requests) == (1, 1)


async def test_throttling_comes_before_failures(client: httpx.AsyncClient, destination: PushDestination) -> None:
    destination.configure(throttle_next=1, fail_next=1)
    statuses = [(await client.post("/batches", json=make_push(1))).status_code for _ in range(3)]
    assert statuses == [429, 503, 202]


async def test_faults_come_after_auth_and_before_validation(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    destination.configure(fail_next=1)
    unauthorized = await client.post("/batches", json=make_push(1), headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401
    assert destination.config.fail_next == 1
    invalid = await client.post("/batches", content=b"{not json")
    assert invalid.status_code == 503
    assert destination.config.fail_next == 0


async def test_latency_delays_the_answer(client: httpx.AsyncClient, destination: PushDestination) -> None:
    destination.configure(latency_seconds=0.005)
    response = await client.post("/batches", json=make_push(1))
    assert response.status_code == 202
    assert response.elapsed >= timedelta(seconds=0.005)


async def test_post_config_changes_behaviour_and_returns_new_config(client: httpx.AsyncClient) -> None:
    response = await client.post("/config", json={"api_key": "other-key", "latency_seconds": 0, "throttle_next": 1})
    with_old_key = await client.post("/batches", json=make_push(1))
    throttled = await client.post("/batches", json=make_push(1), headers={"Authorization": "Bearer other-key"})
    assert response.status_code == 200
    assert response.json() == {
        "api_key": "other-key",
        "latency_seconds": 0,
        "fail_next": 0,
        "fail_status": 503,
        "throttle_next": 1,
        "retry_after_seconds": 0,
        "max_batch_size": 1000,
        "max_body_bytes": 8 * MEGABYTE,
    }
    assert with_old_key.status_code == 401
    assert throttled.status_code == 429


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"latency_seconds": -1}', "latency_seconds"),
        (b'{"latency_seconds": "1"}', "latency_seconds"),
        (b'{"latency_seconds": NaN}', "latency_seconds"),
        (b'{"latency_seconds": Infinity}', "latency_seconds"),
        (b'{"fail_next": true}', "fail_next"),
        (b'{"fail_next": 1.5}', "fail_next"),
        (b'{"fail_next": -1}', "fail_next"),
        (b'{"fail_status": 200}', "fail_status"),
        (b'{"fail_status": 600}', "fail_status"),
        (b'{"throttle_next": null}', "throttle_next"),
        (b'{"retry_after_seconds": -1}', "retry_after_seconds"),
        (b'{"max_batch_size": 0}', "max_batch_size"),
        (b'{"max_body_bytes": 0}', "max_body_bytes"),
        (b'{"api_key": ""}', "api_key"),
        (b'{"api_key": "with space"}', "api_key"),
        (b'{"api_key": 12}', "api_key"),
        (b'{"fail_next": 1, "no_such_setting": 1}', "no_such_setting"),
        (b"[1, 2]", "body"),
        (b"{not json", "body"),
    ],
)
async def test_post_config_rejects_bad_input_and_keeps_config(
    client: httpx.AsyncClient, destination: PushDestination, content: bytes, field: str
) -> None:
    response = await client.post("/config", content=content)
    assert_refused(response, 422, field)
    assert destination.config == PushDestinationConfig()


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"fail_status": 302}, "fail_status"), ({"retry_after_seconds": 1.0}, "retry_after_seconds"), ({"x": 1}, "x")],
)
def test_configure_from_python_names_the_bad_field(changes: dict[str, Any], field: str) -> None:
    destination = PushDestination()
    with pytest.raises(InvalidConfig) as raised:
        destination.configure(**changes)
    assert raised.value.field == field
    assert destination.config == PushDestinationConfig()


def test_config_rejects_bad_values_on_construction() -> None:
    with pytest.raises(InvalidConfig, match="max_batch_size"):
        PushDestinationConfig(max_batch_size=0)


async def test_stats_count_every_outcome(client: httpx.AsyncClient, destination: PushDestination) -> None:
    await client.post("/batches", json=make_push(2), headers={"Idempotency-Key": "a"})
    await client.post("/batches", json=make_push(2), headers={"Idempotency-Key": "a"})
    await client.post("/batches", json=make_push(1), headers={"Authorization": "Bearer wrong"})
    destination.configure(throttle_next=1, fail_next=1)
    await client.post("/batches", json=make_push(1))
    await client.post("/batches", json=make_push(1))
    # Reading the stats is not a push, so neither read below is counted.
    await client.get("/stats")
    stats = (await client.get("/stats")).json()
    assert stats == destination.stats().as_json()
    counts = {name: value for name, value in stats.items() if name != "received"}
    assert counts == {
        "requests": 5,
        "accepted_requests": 1,
        "accepted_batches": 1,
        "accepted_subscribers": 2,
        "replayed": 1,
        "rejected": 1,
        "throttled": 1,
        "failed": 1,
    }
    assert stats["received"] == [
        {"at": "2026-01-01T00:00:00+00:00", "request_id": "dst-000001", "idempotency_key": "a", "subscribers": 2}
    ]


async def test_received_times_come_from_the_injected_clock(
    client: httpx.AsyncClient, destination: PushDestination, clock: FrozenClock
) -> None:
    await client.post("/batches", json=make_push(1))
    clock.advance(minutes=5)
    await client.post("/batches", json=make_push(2))
    received = destination.stats().received
    assert [push.at for push in received] == [clock.now() - timedelta(minutes=5), clock.now()]
    assert [push.subscribers for push in received] == [1, 2]
    assert [push.request_id for push in received] == ["dst-000001", "dst-000002"]


async def test_received_keeps_only_the_newest(clock: FrozenClock) -> None:
    destination = PushDestination(clock=clock.now, received_limit=2)
    transport = httpx.ASGITransport(app=create_push_destination_app(destination))
    async with httpx.AsyncClient(transport=transport, base_url="http://d", headers=AUTHORIZATION) as client:
        for size in (1, 2, 3):
            await client.post("/batches", json=make_push(size))
    stats = destination.stats()
    assert [push.subscribers for push in stats.received] == [2, 3]
    assert stats.accepted_requests == 3


async def test_reset_clears_counters_and_keys_but_not_request_ids(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    headers = {"Idempotency-Key": "a"}
    await client.post("/batches", json=make_push(1), headers=headers)
    reset = await client.post("/reset")
    after = await client.get("/stats")
    again = await client.post("/batches", json=make_push(1), headers=headers)
    assert reset.status_code == 200
    assert after.json()["requests"] == 0
    assert after.json()["received"] == []
    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again.headers
    assert again.headers["X-Request-ID"] == "dst-000004"
    assert destination.stats().accepted_requests == 1


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    responses = [
        await client.get("/stats"),
        await client.get("/no-such-route"),
        await client.get("/batches"),
        await client.post("/config", content=b"[]"),
    ]
    assert [response.headers["X-Request-ID"] for response in responses] == [
        "dst-000001",
        "dst-000002",
        "dst-000003",
        "dst-000004",
    ]


@pytest.fixture
def server() -> Iterator[PushDestinationServer]:
    with PushDestinationServer(PushDestinationConfig(api_key="loopback-key")) as running:
        yield running


def test_server_serves_on_loopback_and_stops(server: PushDestinationServer) -> None:
    assert server.base_url is not None
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.url == f"{server.base_url}/batches"
    server.configure(throttle_next=1, retry_after_seconds=7)
    with httpx.Client(headers={"Authorization": "Bearer loopback-key"}) as http:
        throttled = http.post(server.url, json=make_push(1))
        accepted = http.post(server.url, json=make_push(2))
        stats = http.get(f"{server.base_url}/stats").json()
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
    assert accepted.status_code == 202
    assert stats["accepted_subscribers"] == server.stats().accepted_subscribers == 2
    server.stop()
    assert server.thread is not None
    assert not server.thread.is_alive()


def test_module_runs_in_foreground_and_prints_url() -> None:
    command = [sys.executable, "-m", "membersync.sandbox.push_destination", "--port", "0", "--api-key", "cli-key"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.removeprefix("listening on ")
            assert url.endswith("/batches")
            response = httpx.post(url, json=make_push(1), headers={"Authorization": "Bearer cli-key"})
            assert response.status_code == 202
        finally:
            proc.terminate()
            proc.wait(timeout=10)
