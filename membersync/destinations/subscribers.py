"""The built-in destination: the seed's subscriber API, `{"batches": [{"subscribers": [...]}]}` with a key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from membersync.destinations.contract import DEFAULT_RATE_LIMIT, PushDestination, Subscriber
from membersync.ratelimit import RateLimit

NAME = "subscribers"


class SubscriberApi(PushDestination):
    """POSTs each batch to `url` with `Authorization: Bearer <api_key>`."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        name: str = NAME,
        batch_size: int = 1000,
        rate_limit: RateLimit = DEFAULT_RATE_LIMIT,
    ) -> None:
        self.name = name
        self._url = url
        self._api_key = api_key
        self.batch_size = batch_size
        self.rate_limit = rate_limit

    def url(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def body(self, subscribers: Sequence[Subscriber]) -> dict[str, Any]:
        return {
            "batches": [
                {
                    "subscribers": [
                        {"email": person.email, "name": person.name, "time_zone": person.time_zone}
                        for person in subscribers
                    ]
                }
            ]
        }
