"""Outbound HTTP kernel for sync providers."""

from membersync.http.client import (
    REQUEST_ID_HEADER,
    HttpClient,
    HttpError,
    RetryPolicy,
    build_async_client,
    retry_delay,
)

__all__ = ["REQUEST_ID_HEADER", "HttpClient", "HttpError", "RetryPolicy", "build_async_client", "retry_delay"]
