"""Tests for how the push destination emulator checks a push: authorization, body size, key and payload."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from membersync.sandbox.push_destination import PushDestination
from tests.sandbox.pushes import (
    API_KEY,
    MEGABYTE,
    SUBSCRIBER_0,
    assert_refused,
    make_push,
    make_subscriber,
    push_of,
    subscriber_without,
)


async def test_batch_over_the_limit_is_refused(client: httpx.AsyncClient, destination: PushDestination) -> None:
    too_many = await client.post("/batches", json=make_push(1, 1001))
    destination.configure(max_batch_size=2)
    over_configured = await client.post("/batches", json=make_push(3))
    assert_refused(too_many, 422, "batches[1].subscribers")
    assert_refused(over_configured, 422, "batches[0].subscribers")
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
    response = await client.post("/batches", json=make_push(1), headers=headers)
    assert_refused(response, 401, "authorization")
    assert destination.stats().rejected == 1


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.post("/batches", json=make_push(1), headers={"Authorization": f"bearer {API_KEY}"})
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
        ({**make_push(1), "extra": True}, "extra"),
        ({"batches": [{"subscribers": [None]}]}, SUBSCRIBER_0),
        (push_of(subscriber_without("email")), f"{SUBSCRIBER_0}.email"),
        (push_of(subscriber_without("name")), f"{SUBSCRIBER_0}.name"),
        (push_of(subscriber_without("time_zone")), f"{SUBSCRIBER_0}.time_zone"),
        (push_of(make_subscriber(phone="+441234")), f"{SUBSCRIBER_0}.phone"),
        (push_of(make_subscriber(email=42)), f"{SUBSCRIBER_0}.email"),
        (push_of(make_subscriber(email=["a@b"])), f"{SUBSCRIBER_0}.email"),
        (push_of(make_subscriber(email="no-at-sign")), f"{SUBSCRIBER_0}.email"),
        (push_of(make_subscriber(email="two@at@signs")), f"{SUBSCRIBER_0}.email"),
        (push_of(make_subscriber(email="@example.com")), f"{SUBSCRIBER_0}.email"),
        (push_of(make_subscriber(email="a b@example.com")), f"{SUBSCRIBER_0}.email"),
        (push_of(make_subscriber(email="a" * 309 + "@example.com")), f"{SUBSCRIBER_0}.email"),
        (push_of(make_subscriber(name=None)), f"{SUBSCRIBER_0}.name"),
        (push_of(make_subscriber(name=True)), f"{SUBSCRIBER_0}.name"),
        (push_of(make_subscriber(name="n" * 256)), f"{SUBSCRIBER_0}.name"),
        (push_of(make_subscriber(time_zone=0)), f"{SUBSCRIBER_0}.time_zone"),
        (push_of(make_subscriber(time_zone="Mars/Olympus_Mons")), f"{SUBSCRIBER_0}.time_zone"),
        (push_of(make_subscriber(time_zone="")), f"{SUBSCRIBER_0}.time_zone"),
        (push_of(make_subscriber(time_zone="Europe")), f"{SUBSCRIBER_0}.time_zone"),
        (push_of(make_subscriber(time_zone="zone.tab")), f"{SUBSCRIBER_0}.time_zone"),
    ],
)
async def test_malformed_push_is_refused_naming_the_field(
    client: httpx.AsyncClient, destination: PushDestination, body: object, field: str
) -> None:
    response = await client.post("/batches", json=body)
    assert_refused(response, 422, field)
    assert destination.stats().rejected == 1
    assert destination.stats().accepted_requests == 0


@pytest.mark.parametrize(
    ("subscriber", "field"),
    [
        (make_subscriber(email="a" * MEGABYTE + "@example.com"), f"{SUBSCRIBER_0}.email"),
        (make_subscriber(name="n" * MEGABYTE), f"{SUBSCRIBER_0}.name"),
        (make_subscriber(time_zone="Europe/" + "x" * MEGABYTE), f"{SUBSCRIBER_0}.time_zone"),
        (make_subscriber(**{"k" * MEGABYTE: 1}), f"{SUBSCRIBER_0}." + "k" * 64),
        (make_subscriber(email="ada\x00@example.com"), f"{SUBSCRIBER_0}.email"),
        (make_subscriber(name="Ada\x00Lovelace"), f"{SUBSCRIBER_0}.name"),
        (make_subscriber(name="\ud800"), f"{SUBSCRIBER_0}.name"),
        (make_subscriber(time_zone="UTC\x00"), f"{SUBSCRIBER_0}.time_zone"),
        (make_subscriber(time_zone="../../etc/passwd"), f"{SUBSCRIBER_0}.time_zone"),
        (make_subscriber(time_zone="/etc/passwd"), f"{SUBSCRIBER_0}.time_zone"),
        (make_subscriber(time_zone="Europe/../../../etc/passwd"), f"{SUBSCRIBER_0}.time_zone"),
        (make_subscriber(**{"\ud800": 1}), f"{SUBSCRIBER_0}.\\ud800"),
        (make_subscriber(**{"\x00": 1}), f"{SUBSCRIBER_0}.\x00"),
    ],
)
async def test_hostile_strings_are_refused_naming_the_field(
    client: httpx.AsyncClient, subscriber: dict[str, object], field: str
) -> None:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, the only way a client can send them.
    content = json.dumps(push_of(subscriber)).encode()
    response = await client.post("/batches", content=content)
    assert_refused(response, 422, field)
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
    assert_refused(response, 422, "body")


async def test_body_limit_is_inclusive(client: httpx.AsyncClient, destination: PushDestination) -> None:
    content = json.dumps(make_push(2)).encode()
    destination.configure(max_body_bytes=len(content))
    at_limit = await client.post("/batches", content=content)
    destination.configure(max_body_bytes=len(content) - 1)
    over_limit = await client.post("/batches", content=content)
    assert at_limit.status_code == 202
    assert_refused(over_limit, 413, "body")


async def test_default_body_limit_is_eight_mebibytes(client: httpx.AsyncClient) -> None:
    response = await client.post("/batches", content=b" " * (8 * MEGABYTE + 1))
    assert_refused(response, 413, "body")


async def test_body_limit_counts_bytes_read_not_only_content_length(
    client: httpx.AsyncClient, destination: PushDestination
) -> None:
    destination.configure(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 512

    response = await client.post("/batches", content=chunks())
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "body")
    assert destination.stats().rejected == 1


@pytest.mark.parametrize(("key", "status"), [("", 422), ("k" * 256, 422), ("k" * 255, 202)])
async def test_idempotency_key_length_is_checked(client: httpx.AsyncClient, key: str, status: int) -> None:
    response = await client.post("/batches", json=make_push(1), headers={"Idempotency-Key": key})
    assert response.status_code == status
    if status == 422:
        assert_refused(response, 422, "idempotency_key")
