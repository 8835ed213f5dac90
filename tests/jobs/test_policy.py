from __future__ import annotations

from datetime import UTC, datetime, timedelta

from membersync.jobs.policy import decide_retry, describe_error
from membersync.jobs.spec import RetryStrategy

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_retries_until_the_last_attempt_then_gives_up() -> None:
    strategy = RetryStrategy(max_attempts=3, delay=timedelta(seconds=60))
    assert decide_retry(strategy, 1, NOW).run_at == NOW + timedelta(seconds=60)
    assert decide_retry(strategy, 2, NOW).retry
    assert not decide_retry(strategy, 3, NOW).retry


def test_permanent_errors_are_not_retried() -> None:
    assert not decide_retry(RetryStrategy(), 1, NOW, permanent=True).retry


def test_error_text_is_bounded() -> None:
    assert len(describe_error(ValueError("x" * 10_000))) == 2000
