"""Tests for the CRM emulator: its routes through ASGI, and serving it on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from membersync.sandbox.crm import CrmConfig, CrmServer, create_crm_app


@asynccontextmanager
async def _client(**config: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_crm_app(CrmConfig(**config)))
    async with httpx.AsyncClient(transport=transport, base_url="http://crm") as client:
        yield client


async def test_member_record_is_deterministic_per_email() -> None:
    async with _client() as first, _client() as second:
        a = (await first.get("/members/ada@example.org")).json()
        again = (await second.get("/members/ada@example.org")).json()
        other = (await first.get("/members/bob@example.org")).json()
    assert a == again
    assert a != other
    assert a["email"] == "ada@example.org"
    assert a["id"].startswith("crm_")
    assert len(a["id"]) == len("crm_") + 12
    assert a["tier"] in {"bronze", "silver", "gold"}
    assert isinstance(a["is_active_member"], bool)
    assert isinstance(a["total_donations"], int)
    assert datetime.fromisoformat(a["updated_at"]).utcoffset() == timedelta(0)


async def test_inactive_share_is_roughly_respected() -> None:
    async with _client(inactive_share=0.2) as client:
        records = [(await client.get(f"/members/user{i}@example.org")).json() for i in range(400)]
    inactive = sum(not record["is_active_member"] for record in records)
    assert 40 <= inactive <= 120


async def test_missing_email_is_not_found() -> None:
    async with _client() as client:
        response = await client.get("/members/missing.person@example.org")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}


@pytest.mark.parametrize("email", ["no-at-sign.example.org", "a" * 310 + "@example.org"])
async def test_invalid_email_is_rejected(email: str) -> None:
    async with _client() as client:
        response = await client.get(f"/members/{email}")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_email"}


async def test_error_rate_one_always_answers_503() -> None:
    async with _client(error_rate=1.0) as client:
        responses = [await client.get("/members/ada@example.org") for _ in range(5)]
    assert [r.status_code for r in responses] == [503] * 5
    assert all("error" in r.json() for r in responses)


async def test_throttle_rate_one_answers_429_with_retry_after() -> None:
    async with _client(throttle_rate=1.0, retry_after_seconds=7) as client:
        response = await client.get("/members/ada@example.org")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


async def test_faults_are_reproducible_for_a_seed() -> None:
    async def statuses() -> list[int]:
        async with _client(error_rate=0.3, throttle_rate=0.2, seed=42) as client:
            return [(await client.get(f"/members/u{i}@example.org")).status_code for i in range(30)]

    first = await statuses()
    assert first == await statuses()
    assert {200, 429, 503} <= set(first)


async def test_latency_delays_every_answer() -> None:
    async with _client(latency_seconds=0.05, error_rate=1.0) as client:
        response = await client.get("/members/ada@example.org")
    assert response.status_code == 503
    assert response.elapsed >= timedelta(seconds=0.05)


async def test_stats_count_outcomes() -> None:
    async with _client() as client:
        await client.get("/members/ada@example.org")
        await client.get("/members/missing@example.org")
        await client.post("/config", json={"throttle_rate": 1.0})
        await client.get("/members/ada@example.org")
        await client.post("/config", json={"throttle_rate": 0.0, "error_rate": 1.0})
        await client.get("/members/ada@example.org")
        stats = (await client.get("/stats")).json()
    assert stats == {"requests": 4, "ok": 1, "errors": 1, "throttled": 1, "not_found": 1}


async def test_post_config_changes_behaviour_and_returns_new_config() -> None:
    async with _client() as client:
        response = await client.post("/config", json={"error_rate": 1, "retry_after_seconds": 3})
        faulted = await client.get("/members/ada@example.org")
    assert response.status_code == 200
    assert response.json() == {
        "latency_seconds": 0.0,
        "error_rate": 1.0,
        "throttle_rate": 0.0,
        "retry_after_seconds": 3,
        "seed": 0,
        "inactive_share": 0.2,
    }
    assert faulted.status_code == 503


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": "high"},
        {"error_rate": 1.5},
        {"latency_seconds": -1},
        {"seed": 1.5},
        {"retry_after_seconds": True},
        {"no_such_field": 1},
        [1, 2],
    ],
)
async def test_post_config_rejects_bad_input_and_keeps_config(body: object) -> None:
    async with _client() as client:
        response = await client.post("/config", json=body)
        after = await client.get("/members/ada@example.org")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_config"
    assert after.status_code == 200


async def test_post_config_rejects_malformed_json() -> None:
    async with _client() as client:
        response = await client.post("/config", content=b"{not json")
    assert response.status_code == 400


def test_crm_server_serves_on_loopback_and_stops() -> None:
    server = CrmServer(CrmConfig())
    with server as url:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url) as client:
            response = client.get("/members/ada@example.org")
        thread = server.thread
    assert response.status_code == 200
    assert response.json()["email"] == "ada@example.org"
    assert thread is not None
    assert not thread.is_alive()


def test_module_runs_in_foreground_and_prints_url() -> None:
    command = [sys.executable, "-m", "membersync.sandbox.crm", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.removeprefix("listening on ")
            with httpx.Client(base_url=url) as client:
                response = client.get("/members/ada@example.org")
            assert response.status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=10)
