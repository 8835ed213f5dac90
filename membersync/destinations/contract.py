"""What a push destination declares: its name, batch size and rate limit, which members it takes, how a
batch becomes a request, and how a response is read. Destinations are plug-ins, like sync providers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import Select

from membersync.ratelimit import RateLimit

DEFAULT_BATCH_SIZE = 1000
DEFAULT_RATE_LIMIT = RateLimit(50, timedelta(hours=1))


# Not frozen: a frozen dataclass takes three times as long to build, and every batch builds a thousand.
@dataclass(slots=True)
class Subscriber:
    """A member as a destination receives it: the name falls back to given and family name, the time zone to
    UTC."""

    member_id: int
    email: str
    name: str
    time_zone: str


@dataclass(frozen=True)
class PushReply:
    """How a destination answered one batch request."""

    accepted: bool
    permanent: bool = False
    retry_after: str | None = None
    remote_request_id: str | None = None
    detail: str = ""


class PushDestination(ABC):
    """A place members are pushed to. Subclass, set `name`, and write `url`, `headers` and `body`."""

    name: str = ""
    batch_size: int = DEFAULT_BATCH_SIZE
    rate_limit: RateLimit = DEFAULT_RATE_LIMIT

    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def headers(self) -> dict[str, str]: ...

    @abstractmethod
    def body(self, subscribers: Sequence[Subscriber]) -> dict[str, Any]:
        """The JSON body of one batch request."""

    def select(self, members: Select[int, str]) -> Select[int, str]:
        """Narrow the members a push takes (member id and email; by default every member changed since its
        last successful push), e.g. `members.where(Member.status == "active")`."""
        return members

    def read(self, response: httpx.Response) -> PushReply:
        """A 2xx accepts the batch; 408, 429 and 5xx are worth another try; any other 4xx is final."""
        remote_id = response.headers.get("X-Request-ID")
        if response.is_success:
            return PushReply(True, remote_request_id=remote_id)
        status = response.status_code
        retryable = status in (408, 429) or status >= 500
        return PushReply(
            False,
            permanent=not retryable,
            retry_after=response.headers.get("Retry-After"),
            remote_request_id=remote_id,
            detail=response.text[:500],
        )


class UnknownDestination(LookupError):
    pass


class DestinationRegistry:
    def __init__(self) -> None:
        self._destinations: dict[str, PushDestination] = {}

    def register(self, destination: PushDestination) -> None:
        if not destination.name:
            raise ValueError(f"{type(destination).__name__} has no name")
        if not 1 <= destination.batch_size <= 10_000:
            raise ValueError(f"{destination.name}: batch_size must be between 1 and 10,000")
        self._destinations[destination.name] = destination

    def get(self, name: str) -> PushDestination:
        try:
            return self._destinations[name]
        except KeyError:
            known = ", ".join(sorted(self._destinations)) or "none configured"
            raise UnknownDestination(f"unknown push destination {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._destinations)
