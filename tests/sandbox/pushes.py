"""Push bodies and checks shared by the push destination emulator's tests."""

from __future__ import annotations

from typing import Any

import httpx

API_KEY = "sandbox-key"
AUTHORIZATION = {"Authorization": f"Bearer {API_KEY}"}
MEGABYTE = 1024 * 1024
SUBSCRIBER_0 = "batches[0].subscribers[0]"


def make_subscriber(index: int = 0, **changes: object) -> dict[str, object]:
    return {"email": f"user{index}@example.com", "name": f"User {index}", "time_zone": "UTC", **changes}


def make_push(*batch_sizes: int) -> dict[str, Any]:
    return {"batches": [{"subscribers": [make_subscriber(i) for i in range(size)]} for size in batch_sizes]}


def push_of(subscriber: dict[str, object]) -> dict[str, Any]:
    return {"batches": [{"subscribers": [subscriber]}]}


def subscriber_without(key: str) -> dict[str, object]:
    subscriber = make_subscriber()
    del subscriber[key]
    return subscriber


def assert_refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status
    assert response.json()["field"] == field
    assert isinstance(response.json()["error"], str)
    assert response.headers["X-Request-ID"].startswith("dst-")
