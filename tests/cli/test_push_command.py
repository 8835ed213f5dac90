"""`membersync push DESTINATION --tenant SLUG [--since …]`, in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli, Db


@pytest.fixture
def destination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBERSYNC_PUSH_URL", "http://127.0.0.1:9/batches")
    monkeypatch.setenv("MEMBERSYNC_PUSH_API_KEY", "sandbox-key")


def test_push_queues_batches_and_says_so(cli: Cli, db: Db, destination: None) -> None:
    assert cli("tenant", "create", "acme").code == 0
    db.add_members("acme", 3)
    result = cli("push", "subscribers", "--tenant", "acme")
    assert result.code == 0, result
    assert "3 of 3 members in 1 batches" in result.stdout
    assert db.rows("SELECT member_count, status FROM push_batches") == [(3, "queued")]
    assert db.rows("SELECT name, queue, status FROM jobs WHERE name = 'push.send_batch'") == [
        ("push.send_batch", "user-sync", "queued")
    ]
    again = cli("push", "subscribers", "--tenant", "acme")
    assert "0 of 0 members in 0 batches" in again.stdout


def test_push_since_takes_recently_changed_members(cli: Cli, db: Db, destination: None) -> None:
    assert cli("tenant", "create", "acme").code == 0
    db.add_members("acme", 2)
    assert "2 of 2 members" in cli("push", "subscribers", "--tenant", "acme", "--since", "2000-01-01").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["push", "nowhere", "--tenant", "acme"], "error: unknown push destination 'nowhere' (known: subscribers)"),
        (["push", "subscribers", "--tenant", "ghost"], "error: unknown tenant 'ghost'"),
        (["push", "subscribers", "--tenant", "acme", "--since", "yesterday"], "error: --since: not an ISO 8601"),
        (["push", "subscribers", "--tenant", "acme", "--since", "\x00" * 5], "error: --since: not an ISO 8601"),
    ],
)
def test_bad_push_arguments_are_one_line_and_write_nothing(
    cli: Cli, db: Db, destination: None, args: list[str], message: str
) -> None:
    assert cli("tenant", "create", "acme").code == 0
    db.add_members("acme", 1)
    result = cli(*args)
    assert result.code == 2, result
    assert result.error.startswith(message)
    assert db.scalar("SELECT count(*) FROM push_batches") == 0


def test_push_without_a_configured_destination_says_what_to_set(cli: Cli, db: Db) -> None:
    assert cli("tenant", "create", "acme").code == 0
    db.add_members("acme", 1)
    result = cli("push", "subscribers", "--tenant", "acme")
    assert result.code == 2, result
    assert "known: none configured" in result.error
    assert "MEMBERSYNC_PUSH_URL" in result.error
