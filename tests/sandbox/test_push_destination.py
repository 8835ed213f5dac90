"""Tests for the push destination emulator: its routes through ASGI, and serving it on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
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

API_KEY = "sandbox-key"
AUTHORIZATION = {"Authorization": f"Bearer {API_KEY}"}
MEGABYTE = 1024 * 1024
SUBSCRIBER_0 = "batches[0].subscribers[0]"


def _subscriber(index: int = 0, **changes: object) -> dict[str, object]:
    return {"email": f"user{index}@example.com", "name": f"User {index}", "time_zone": "UTC", **changes}


def _push(*batch_sizes: int) -> dict[str, Any]:
    return {"batches": [{"subscribers": [_subscriber(i) for i in range(size)]} for size in batch_sizes]}


def _push_of(subscriber: dict[str, object]) -> dict[str, Any]:
    return {"batches": [{"subscribers": [subscriber]}]}


def _without(key: str) -> dict[str, object]:
    subscriber = _subscriber()
    del subscriber[key]
    return subscriber


@pytest.fixture
def destination(clock: FrozenClock) -> PushDestination:
    return PushDestination(clock=clock.now)


@pytest.fixture
async def client(destination: PushDestination) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_push_destination_app(destination))
    async with httpx.AsyncClient(transport=transport, base_url="http://destination", headers=AUTHORIZATION) as client:
        yield client


def _assert_refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status
    assert response.json()["field"] == field
    assert isinstance(response.json()["error"], str)
    assert response.headers["X-Request-ID"].startswith("dst-")


async def test_push_of_one_subscriber_is_accepted(client: httpx.AsyncClient, destination: PushDestination) -> None:
    response = await client.post("/batches", json=_push(1))
    assert response.status_code == 202
    assert response.json() == {"accepted_batches": 1, "accepted_subscribers": 1}
    assert response.headers["X-Request-ID"] == "dst-000001"
    stats = destination.stats()
    assert (stats.requests, stats.accepted_requests, stats.accepted_subscribers) == (1, 1, 1)


async def test_full_batches_are_accepted(client: httpx.AsyncClient, destination: PushDestination) -> None:
    response = await client.post("/batches", json=_push(1000, 1000, 1))
    assert response.status_code == 202
    assert response.json() == {"accepted_batches": 3, "accepted_subscribers": 2001}
    assert destination.stats().accepted_batches == 3


async def test_batch_over_the_limit_is_refused(client: httpx.AsyncClient, destination: PushDestination) -> None:
    too_many = await client.post("/batches", json=_push(1, 1001))
    destination.configure(max_batch_size=2)
    over_configured = await client.post("/batches", json=_push(3))
    _assert_refused(too_many, 422, "batches[1].subscribers")
    _assert_refused(over_configured, 422, "batches[0].subscribers")
    assert destination.stats().accepted_requests == 0


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"Bearer sandbox-keyx",
        b"Bearer wrong",
        b"Basic sandbox-key",
        b"Bearer",
        b"",
        b"Bearer  sandbox-key",
        b"Bearer \xc3\xa9",
    ],
)
async def test_missing_or_wrong_key_is_unauthorized(
    client: httpx.AsyncClient, destination: PushDestination, authorization: bytes | None
) -> None:
    del client.headers["Authorization"]
    headers = {} if authorization is None else {b"Authorization": authorization}
    response = await client.post("/batches", json=_push(1), headers=headers)
    _assert_refused(response, 401, "authorization")
    assert destination.stats().rejected == 1


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.post("/batches", json=_push(1), headers={"Authorization": f"bearer {API_KEY}"})
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("batches", "body"),
        ({}, "batches"),
        ({"batches": []}, "batches"),
        ({"batches": {"subscribers": []}}, "batches"),
        ({"batches": [1]}, "batches[0]"),
        ({"batches": [{}]}, "batches[0].subscribers"),
        ({"batches": [{"subscribers": []}]}, "batches[0].subscribers"),
        ({"batches": [{"subscribers": "x"}]}, "batches[0].subscribers"),
        ({"batches": [{"subscribers": [], "tag": 1}]}, "batches[0].tag"),
        ({**_push(1), "extra": True}, "extra"),
        ({"batches": [{"subscribers": [None]}]}, SUBSCRIBER_0),
        (_push_of(_without("email")), f"{SUBSCRIBER_0}.email"),
        (_push_of(_without("name")), f"{SUBSCRIBER_0}.name"),
        (_push_of(_without("time_zone")), f"{SUBSCRIBER_0}.time_zone"),
        (_push_of(_subscriber(phone="+441234")), f"{SUBSCRIBER_0}.phone"),
        (_push_of(_subscriber(email=42)), f"{SUBSCRIBER_0}.email"),
        (_push_of(_subscriber(email=["a@b"])), f"{SUBSCRIBER_0}.email"),
        (_push_of(_subscriber(email="no-at-sign")), f"{SUBSCRIBER_0}.email"),
        (_push_of(_subscriber(email="two@at@signs")), f"{SUBSCRIBER_0}.email"),
        (_push_of(_subscriber(email="@example.com")), f"{SUBSCRIBER_0}.email"),
        (_push_of(_subscriber(email="a b@example.com")), f"{SUBSCRIBER_0}.email"),
        (_push_of(_subscriber(email="a" * 309 + "@example.com")), f"{SUBSCRIBER_0}.email"),
        (_push_of(_subscriber(name=None)), f"{SUBSCRIBER_0}.name"),
        (_push_of(_subscriber(name=True)), f"{SUBSCRIBER_0}.name"),
        (_push_of(_subscriber(name="n" * 256)), f"{SUBSCRIBER_0}.name"),
        (_push_of(_subscriber(time_zone=0)), f"{SUBSCRIBER_0}.time_zone"),
        (_push_of(_subscriber(time_zone="Mars/Olympus_Mons")), f"{SUBSCRIBER_0}.time_zone"),
        (_push_of(_subscriber(time_zone="")), f"{SUBSCRIBER_0}.time_zone"),
        (_push_of(_subscriber(time_zone="Europe")), f"{SUBSCRIBER_0}.time_zone"),
        (_push_of(_subscriber(time_zone="zone.tab")), f"{SUBSCRIBER_0}.time_zone"),
    ],
)
async def test_malformed_push_is_refused_naming_the_field(
    client: httpx.AsyncClient, destination: PushDestination, body: object, field: str
) -> None:
    response = await client.post("/batches", json=body)
    _assert_refused(response, 422, field)
    assert destination.stats().rejected == 1
    assert destination.stats().accepted_requests == 0


@pytest.mark.parametrize(
    ("subscriber", "field"),
    [
        (_subscriber(email="a" * MEGABYTE + "@example.com"), f"{SUBSCRIBER_0}.email"),
        (_subscriber(name="n" * MEGABYTE), f"{SUBSCRIBER_0}.name"),
        (_subscriber(time_zone="Europe/" + "x" * MEGABYTE), f"{SUBSCRIBER_0}.time_zone"),
        (_subscriber(**{"k" * MEGABYTE: 1}), f"{SUBSCRIBER_0}." + "k" * 64),
        (_subscriber(email="ada\x00@example.com"), f"{SUBSCRIBER_0}.email"),
        (_subscriber(name="Ada\x00Lovelace"), f"{SUBSCRIBER_0}.name"),
        (_subscriber(name="\ud800"), f"{SUBSCRIBER_0}.name"),
        (_subscriber(time_zone="UTC\x00"), f"{SUBSCRIBER_0}.time_zone"),
        (_subscriber(time_zone="../../etc/passwd"), f"{SUBSCRIBER_0}.time_zone"),
        (_subscriber(time_zone="/etc/passwd"), f"{SUBSCRIBER_0}.time_zone"),
        (_subscriber(time_zone="Europe/../../../etc/passwd"), f"{SUBSCRIBER_0}.time_zone"),
        (_subscriber(**{"\ud800": 1}), f"{SUBSCRIBER_0}.\\ud800"),
        (_subscriber(**{"\x00": 1}), f"{SUBSCRIBER_0}.\x00"),
    ],
)
async def test_hostile_strings_are_refused_naming_the_field(
    client: httpx.AsyncClient, subscriber: dict[str, object], field: str
) -> None:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, the only way a client can send them.
    content = json.dumps(_push_of(subscriber)).encode()
    response = await client.post("/batches", content=content)
    _assert_refused(response, 422, field)
    assert len(response.content) < 1024


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"batches": [',
        b"\xff\xfe\x00garbage",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"batches": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"batches": [{"subscribers": [{"email": 1' + b"0" * 5000 + b"}]}]}",
    ],
)
async def test_unparseable_body_is_refused(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/batches", content=content)
    _assert_refused(response, 422, "body")


async def test_body_limit_is_inclusive(client: httpx.AsyncClient, destination: PushDestination) -> None:
    content = json.dumps(_push(2)).encode()
    destination.configure(max_body_bytes=len(content))
    at_limit = await client.post("/batches", content=content)
    destination.configure(max_body_bytes=len(content) - 1)
    over_limit = await client.post("/batches", content=content)
    assert at_limit.status_code == 202
    _assert_refused(over_limit, 413, "body")


async def test_default_body_limit_is_eight_mebibytes(client: httpx.AsyncClient) -> None:
    response = await client.post("/batches", content=b" " * (8 * MEGABYTE + 1))
    _assert_refused(response, 413, "body")


async def test_body_limit_counts_bytes_read_not_only_content_length(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    destination.configure(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 512

    response = await client.post("/batches", content=chunks())
    assert "content-length" not in response.request.headers
    _assert_refused(response, 413, "body")
    assert destination.stats().rejected == 1


async def test_same_key_and_body_replays_the_original_answer(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    headers = {"Idempotency-Key": "push-1"}
    first = await client.post("/batches", json=_push(3), headers=headers)
    again = await client.post("/batches", json=_push(3), headers=headers)
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
    await client.post("/batches", json=_push(3), headers=headers)
    response = await client.post("/batches", json=_push(4), headers=headers)
    _assert_refused(response, 422, "idempotency_key")
    assert destination.stats().accepted_subscribers == 3


async def test_concurrent_pushes_with_one_key_are_accepted_once(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    pushes = [client.post("/batches", json=_push(2), headers={"Idempotency-Key": "k"}) for _ in range(10)]
    responses = await asyncio.gather(*pushes)
    assert {response.status_code for response in responses} == {202}
    stats = destination.stats()
    assert (stats.accepted_requests, stats.replayed) == (1, 9)


async def test_refused_push_leaves_its_key_free(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "push-1"}
    refused = await client.post("/batches", json=_push(1001), headers=headers)
    accepted = await client.post("/batches", json=_push(1), headers=headers)
    assert refused.status_code == 422
    assert accepted.status_code == 202
    assert "Idempotent-Replayed" not in accepted.headers


@pytest.mark.parametrize(("key", "status"), [("", 422), ("k" * 256, 422), ("k" * 255, 202)])
async def test_idempotency_key_length_is_checked(client: httpx.AsyncClient, key: str, status: int) -> None:
    response = await client.post("/batches", json=_push(1), headers={"Idempotency-Key": key})
    assert response.status_code == status
    if status == 422:
        _assert_refused(response, 422, "idempotency_key")


@pytest.mark.parametrize("fail_status", [503, 500, 400])
async def test_fail_next_fails_that_many_pushes(
    client: httpx.AsyncClient, destination: PushDestination, fail_status: int
) -> None:
    destination.configure(fail_next=2, fail_status=fail_status)
    statuses = [(await client.post("/batches", json=_push(1))).status_code for _ in range(3)]
    assert statuses == [fail_status, fail_status, 202]
    stats = destination.stats()
    assert (stats.failed, stats.accepted_requests, stats.rejected) == (2, 1, 0)
    assert destination.config.fail_next == 0


@pytest.mark.parametrize("retry_after", [0, 7])
async def test_throttle_next_answers_429_with_retry_after(
    client: httpx.AsyncClient, destination: PushDestination, retry_after: int
) -> None:
    destination.configure(throttle_next=1, retry_after_seconds=retry_after)
    throttled = await client.post("/batches", json=_push(1))
    accepted = await client.post("/batches", json=_push(1))
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == str(retry_after)
    assert "X-Request-ID" in throttled.headers
    assert accepted.status_code == 202
    assert (destination.stats().throttled, destination.stats().accepted_requests) == (1, 1)


async def test_throttling_comes_before_failures(client: httpx.AsyncClient, destination: PushDestination) -> None:
    destination.configure(throttle_next=1, fail_next=1)
    statuses = [(await client.post("/batches", json=_push(1))).status_code for _ in range(3)]
    assert statuses == [429, 503, 202]


async def test_faults_come_after_auth_and_before_validation(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    destination.configure(fail_next=1)
    unauthorized = await client.post("/batches", json=_push(1), headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401
    assert destination.config.fail_next == 1
    invalid = await client.post("/batches", content=b"{not json")
    assert invalid.status_code == 503
    assert destination.config.fail_next == 0


async def test_latency_delays_the_answer(client: httpx.AsyncClient, destination: PushDestination) -> None:
    destination.configure(latency_seconds=0.005)
    response = await client.post("/batches", json=_push(1))
    assert response.status_code == 202
    assert response.elapsed >= timedelta(seconds=0.005)


async def test_post_config_changes_behaviour_and_returns_new_config(client: httpx.AsyncClient) -> None:
    response = await client.post("/config", json={"api_key": "other-key", "latency_seconds": 0, "throttle_next": 1})
    with_old_key = await client.post("/batches", json=_push(1))
    throttled = await client.post("/batches", json=_push(1), headers={"Authorization": "Bearer other-key"})
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
    _assert_refused(response, 422, field)
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
    await client.post("/batches", json=_push(2), headers={"Idempotency-Key": "a"})
    await client.post("/batches", json=_push(2), headers={"Idempotency-Key": "a"})
    await client.post("/batches", json=_push(1), headers={"Authorization": "Bearer wrong"})
    destination.configure(throttle_next=1, fail_next=1)
    await client.post("/batches", json=_push(1))
    await client.post("/batches", json=_push(1))
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
    await client.post("/batches", json=_push(1))
    clock.advance(minutes=5)
    await client.post("/batches", json=_push(2))
    received = destination.stats().received
    assert [push.at for push in received] == [clock.now() - timedelta(minutes=5), clock.now()]
    assert [push.subscribers for push in received] == [1, 2]
    assert [push.request_id for push in received] == ["dst-000001", "dst-000002"]


async def test_received_keeps_only_the_newest(clock: FrozenClock) -> None:
    destination = PushDestination(clock=clock.now, received_limit=2)
    transport = httpx.ASGITransport(app=create_push_destination_app(destination))
    async with httpx.AsyncClient(transport=transport, base_url="http://d", headers=AUTHORIZATION) as client:
        for size in (1, 2, 3):
            await client.post("/batches", json=_push(size))
    stats = destination.stats()
    assert [push.subscribers for push in stats.received] == [2, 3]
    assert stats.accepted_requests == 3


async def test_reset_clears_counters_and_keys_but_not_request_ids(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    headers = {"Idempotency-Key": "a"}
    await client.post("/batches", json=_push(1), headers=headers)
    reset = await client.post("/reset")
    after = await client.get("/stats")
    again = await client.post("/batches", json=_push(1), headers=headers)
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
        throttled = http.post(server.url, json=_push(1))
        accepted = http.post(server.url, json=_push(2))
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
            response = httpx.post(url, json=_push(1), headers={"Authorization": "Bearer cli-key"})
            assert response.status_code == 202
        finally:
            proc.terminate()
            proc.wait(timeout=10)
