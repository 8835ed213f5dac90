"""Pure retry decisions for the job ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from membersync.jobs.spec import RetryStrategy

MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    run_at: datetime | None


def decide_retry(strategy: RetryStrategy, attempts: int, now: datetime, *, permanent: bool = False) -> RetryDecision:
    """After a failed attempt number `attempts`: run again later, or give up."""
    if permanent or attempts >= strategy.max_attempts:
        return RetryDecision(retry=False, run_at=None)
    return RetryDecision(retry=True, run_at=now + strategy.delay)


def describe_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
