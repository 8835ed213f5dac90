"""The `membersync` command line, run in-process against SQLite and PostgreSQL.

Bad input exits 2 and infrastructure problems exit 1, each with one line on stderr starting with
`error: `.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from membersync import runtime as runtime_module
from membersync.clock import FrozenClock
from membersync.config import Settings
from membersync.db import migrate
from membersync.jobs.queue import AUDIENCE_SYNC_QUEUE, HueyQueue
from membersync.models import ApiToken, ExternalProfile, Job, JobStatus, SyncRun, Tenant
from tests.cli.conftest import Cli, CliResult, Db, open_db
from tests.cli.plugin_fixture import BADLY_NAMED, CRM, FLAKY, NOT_A_PROVIDER, REGISTER_BOTH

UPGRADE_HINT = "membersync db upgrade"


def _pending_messages(data_dir: Path) -> int:
    """Messages waiting in the embedded (SqliteHuey) queue of the audience-sync workers."""
    queue = HueyQueue(Settings(_env_file=None, data_dir=data_dir), batch_size=50)
    try:
        return queue.pending(AUDIENCE_SYNC_QUEUE)
    finally:
        queue.close()


def _jobs(db: Db, target: str | None = None) -> list[tuple[str, int]]:
    statement = select(Job.status, Job.attempts).where(Job.name == "member.sync").order_by(Job.id)
    if target is not None:
        statement = statement.where(Job.target == target)
    return [(status, attempts) for status, attempts in db.all(statement)]


def _ok(result: CliResult) -> str:
    assert result.code == 0, result
    return result.stdout


# --- db upgrade and the schema guard -------------------------------------------------------------


def test_db_upgrade_creates_the_embedded_default_and_is_harmless_again(cli: Cli, data_dir: Path) -> None:
    url = f"sqlite:///{data_dir / 'membersync.db'}"
    assert not data_dir.exists()
    first = cli("db", "upgrade")
    assert first.code == 0, first
    head = migrate.head_revision(url)
    assert head is not None
    assert first.stdout.strip() == f"database at {head} (latest)"
    assert migrate.current_revision(url) == head
    with open_db(url) as db:
        assert set(db.counts().values()) == {0}
    assert _ok(cli("tenant", "create", "acme")).startswith("created tenant acme")
    again = cli("db", "upgrade")
    assert again.code == 0, again
    assert again.stdout == first.stdout
    with open_db(url) as db:
        assert db.scalar("SELECT slug FROM tenants") == "acme"


def test_db_upgrade_creates_a_database_at_a_fresh_path(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'deeper' / 'fresh.db'}"
    monkeypatch.setenv("MEMBERSYNC_DATABASE_URL", url)
    assert _ok(cli("db", "upgrade"))
    assert migrate.current_revision(url) == migrate.head_revision(url)
    assert _ok(cli("db", "upgrade"))
    assert _ok(cli("tenant", "create", "acme"))


def test_db_upgrade_on_a_migrated_database_keeps_its_data(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    assert "(latest)" in _ok(cli("db", "upgrade"))
    assert db.scalar("SELECT slug FROM tenants") == "acme"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("tick",), id="tick"),
        pytest.param(("jobs", "list"), id="jobs-list"),
        pytest.param(("jobs", "retry-failed"), id="jobs-retry-failed"),
        pytest.param(("tenant", "create", "acme"), id="tenant-create"),
        pytest.param(("token", "create", "--tenant", "acme"), id="token-create"),
        pytest.param(("sync", "--tenant", "acme"), id="sync"),
    ],
)
def test_commands_refuse_an_unmigrated_database(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    url = f"sqlite:///{tmp_path / 'unmigrated.db'}"
    monkeypatch.setenv("MEMBERSYNC_DATABASE_URL", url)
    result = cli(*args)
    assert result.code == 1, result
    assert UPGRADE_HINT in result.error
    assert result.stdout == ""
    assert migrate.current_revision(url) is None


def test_errors_are_one_line_at_the_default_log_level(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEMBERSYNC_LOG_LEVEL")
    monkeypatch.setenv("MEMBERSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'unmigrated.db'}")
    result = cli("tick")
    assert result.code == 1
    assert UPGRADE_HINT in result.error


# --- tenants -------------------------------------------------------------------------------------


def test_tenant_create_then_again(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme", "--name", "Acme Ltd")).startswith("created tenant acme (id ")
    again = cli("tenant", "create", "acme")
    assert again.code == 2, again
    assert again.error == "error: tenant 'acme' already exists"
    assert again.stdout == ""
    assert [tuple(row) for row in db.all(select(Tenant.slug, Tenant.name))] == [("acme", "Acme Ltd")]


def test_tenant_slug_boundaries(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "a" * 63))
    assert _ok(cli("tenant", "create", "0-a"))
    assert db.scalar("SELECT count(*) FROM tenants") == 2


@pytest.mark.parametrize("slug", ["Bad Slug!", "", "a" * 100, "a" * 64, "acme_co", "ACME", " acme"])
def test_tenant_create_refuses_a_bad_slug(cli: Cli, db: Db, slug: str) -> None:
    result = cli("tenant", "create", slug)
    assert result.code == 2, result
    assert result.error.startswith(f"error: invalid tenant slug {slug!r}")
    assert result.stdout == ""
    assert db.scalar("SELECT count(*) FROM tenants") == 0


def test_tenant_create_refuses_an_overlong_name(cli: Cli, db: Db) -> None:
    result = cli("tenant", "create", "acme", "--name", "n" * 10_240)
    assert result.code == 2, result
    assert "name" in result.error
    assert db.scalar("SELECT count(*) FROM tenants") == 0


# --- tokens --------------------------------------------------------------------------------------


def test_token_create_prints_the_token_once_and_stores_only_its_hash(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    result = cli("token", "create", "--tenant", "acme", "--name", "ci")
    token = _ok(result).strip()
    assert token.startswith("ms_")
    assert "\n" not in token
    assert len(token) > 40
    assert "cannot be shown again" in result.stderr
    rows = db.all(select(ApiToken))
    assert len(rows) == 1
    stored = rows[0][0]
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.name == "ci"
    assert token.startswith(stored.prefix)
    everything = " ".join(str(value) for row in db.rows("SELECT * FROM api_tokens") for value in row)
    assert token not in everything
    assert token[len(stored.prefix) :] not in everything
    second = _ok(cli("token", "create", "--tenant", "acme")).strip()
    assert second != token
    assert db.scalar("SELECT count(*) FROM api_tokens") == 2


def test_token_create_for_an_unknown_tenant(cli: Cli, db: Db) -> None:
    result = cli("token", "create", "--tenant", "ghost")
    assert result.code == 2, result
    assert result.error == "error: unknown tenant 'ghost'"
    assert result.stdout == ""
    assert db.scalar("SELECT count(*) FROM api_tokens") == 0


# --- sync ----------------------------------------------------------------------------------------


def test_sync_queues_jobs_for_the_workers(cli: Cli, db: Db, data_dir: Path) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 3)
    out = _ok(cli("sync", "--tenant", "acme"))
    assert "crm: 3 jobs queued" in out
    assert _jobs(db) == [("queued", 0)] * 3
    assert _pending_messages(data_dir) == 1  # one batch of three ledger rows
    runs = db.all(select(SyncRun.provider, SyncRun.last_trigger, SyncRun.last_dispatch_count))
    assert [tuple(run) for run in runs] == [("crm", "manual", 3)]
    assert db.scalar("SELECT count(*) FROM external_profiles") == 0


def test_sync_wait_runs_the_jobs_in_process(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    member_ids = db.add_members("acme", 3)
    out = _ok(cli("sync", "crm", "--tenant", "acme", "--wait"))
    assert "crm: 3 jobs queued" in out
    assert _jobs(db) == [("succeeded", 1)] * 3
    profiles = db.all(select(ExternalProfile).order_by(ExternalProfile.member_id))
    assert [(p.member_id, p.provider, p.external_id, p.data) for (p,) in profiles] == [
        (member_id, "crm", str(member_id), {"ok": True}) for member_id in member_ids
    ]


def test_sync_wait_after_sync_runs_the_queued_jobs_once(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 2)
    assert "crm: 2 jobs queued" in _ok(cli("sync", "--tenant", "acme"))
    out = _ok(cli("sync", "crm", "--tenant", "acme", "--wait"))
    assert "crm: 0 jobs queued" in out  # the pending jobs hold their de-duplication keys
    assert _jobs(db) == [("succeeded", 1)] * 2
    assert db.scalar("SELECT count(*) FROM external_profiles") == 2


def test_sync_wait_leaves_other_providers_jobs_alone(cli: Cli, db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBERSYNC_PLUGINS", f"{CRM},{FLAKY}")
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 2)
    assert "flaky: 2 jobs queued" in _ok(cli("sync", "flaky", "--tenant", "acme"))
    # An operator's shell without the `flaky` plug-in (the workers have it) runs a crm sync.
    monkeypatch.setenv("MEMBERSYNC_PLUGINS", CRM)
    assert _ok(cli("sync", "crm", "--tenant", "acme", "--wait"))
    assert _jobs(db, "crm") == [("succeeded", 1)] * 2
    assert _jobs(db, "flaky") == [("queued", 0)] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("sync", "nope", "--tenant", "acme"),
            "error: unknown sync provider 'nope' (known: crm)",
            id="unknown-provider",
        ),
        pytest.param(("sync", "--tenant", "ghost"), "error: unknown tenant 'ghost'", id="unknown-tenant"),
        pytest.param(("sync", "crm", "--tenant", "ghost"), "error: unknown tenant 'ghost'", id="unknown-tenant-crm"),
    ],
)
def test_sync_refuses_bad_input(cli: Cli, db: Db, args: tuple[str, ...], message: str) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 1)
    before = db.counts()
    result = cli(*args)
    assert result.code == 2, result
    assert result.error == message
    assert result.stdout == ""
    assert db.counts() == before


# --- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("--bogus-option",), "--bogus-option", id="unknown-option"),
        pytest.param(("sync", "--bogus-option", "--tenant", "acme"), "--bogus-option", id="unknown-sync-option"),
        pytest.param(("sync",), "--tenant", id="sync-without-tenant"),
        pytest.param(("sync", "--tenant"), "--tenant", id="tenant-without-value"),
        pytest.param(("jobs", "list", "--limit", "0"), "--limit", id="limit-0"),
        pytest.param(("jobs", "list", "--limit", "10001"), "--limit", id="limit-too-big"),
        pytest.param(("jobs", "list", "--limit", "many"), "--limit", id="limit-not-a-number"),
        pytest.param(("nonsense",), "nonsense", id="unknown-command"),
        pytest.param(("worker", "--queue", "nope"), "--queue", id="worker-unknown-queue"),
        pytest.param(("worker", "--queue", "user-sync\x00"), "--queue", id="worker-hostile-queue"),
        pytest.param(("worker", "--queue"), "--queue", id="worker-queue-without-value"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(cli: Cli, args: tuple[str, ...], expected: str) -> None:
    result = cli(*args)
    assert result.code == 2, result
    assert expected in result.error


def test_no_arguments_shows_the_usage_and_exits_2(cli: Cli) -> None:
    result = cli()
    assert result.code == 2, result
    assert "Usage:" in result.stdout + result.stderr


# --- tick ----------------------------------------------------------------------------------------


def test_tick_dispatches_once_per_window(cli: Cli, db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FrozenClock()  # 2026-01-01 00:00 UTC: no real time passes between the ticks
    monkeypatch.setattr(runtime_module, "SystemClock", lambda: clock)
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 3)
    out = _ok(cli("tick"))
    assert "acme/crm: 3 jobs queued" in out
    assert "tick 00:00 UTC: 3 jobs for 1 providers" in out
    assert _jobs(db) == [("queued", 0)] * 3
    assert _ok(cli("tick")).strip() == "window 2026-01-01 00:00 UTC already ticked: nothing to do"
    assert len(_jobs(db)) == 3
    clock.advance(minutes=5)
    assert _ok(cli("tick")).strip() == "tick 00:05 UTC: 0 jobs for 0 providers"  # crm is hourly
    assert len(_jobs(db)) == 3


def test_tick_on_the_real_clock_then_again_at_once(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 2)
    assert "acme/crm: 2 jobs queued" in _ok(cli("tick"))
    second = _ok(cli("tick"))
    # The second tick falls in the same 5-minute window, unless the first ran right at its end.
    assert "nothing to do" in second or "0 jobs for 0 providers" in second
    assert len(_jobs(db)) == 2


# --- jobs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "shown"), [((), 2), (("--status", "failed"), 0), (("--status", "queued", "--limit", "1"), 1)]
)
def test_jobs_list(cli: Cli, db: Db, args: tuple[str, ...], shown: int) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 2)
    assert _ok(cli("sync", "--tenant", "acme"))
    out = _ok(cli("jobs", "list", *args))
    assert "last error" in out
    assert out.count("member.sync") == shown


def test_jobs_list_refuses_an_unknown_status(cli: Cli, db: Db) -> None:
    result = cli("jobs", "list", "--status", "nonsense")
    assert result.code == 2, result
    assert result.error == (
        "error: unknown job status 'nonsense': use one of " + ", ".join(status.value for status in JobStatus)
    )


def test_jobs_retry_failed_requeues_failed_jobs(
    cli: Cli, db: Db, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMBERSYNC_PLUGINS", REGISTER_BOTH)
    monkeypatch.setenv("MEMBERSYNC_JOB_RETRY_DELAY_SECONDS", "0")
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 2)
    assert "flaky: 2 jobs queued" in _ok(cli("sync", "flaky", "--tenant", "acme", "--wait"))
    assert _jobs(db) == [("failed", 3)] * 2
    listed = _ok(cli("jobs", "list", "--status", "failed"))
    assert listed.count("3/3") == 2
    assert "the remote CRM is down" in listed
    pending = _pending_messages(data_dir)
    assert _ok(cli("jobs", "retry-failed")).strip() == "re-queued 2 failed jobs"
    assert _jobs(db) == [("queued", 0)] * 2
    assert _pending_messages(data_dir) == pending + 1
    assert _ok(cli("jobs", "retry-failed")).strip() == "re-queued 0 failed jobs"


def test_jobs_retry_failed_with_a_row_failed_by_hand(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 2)
    assert _ok(cli("sync", "--tenant", "acme"))
    first = min(db.rows("SELECT id FROM jobs WHERE name = 'member.sync'"))[0]
    db.execute(
        "UPDATE jobs SET status = 'failed', attempts = 3, last_error = 'boom', dedup_key = NULL WHERE id = :id",
        {"id": first},
    )
    assert _ok(cli("jobs", "retry-failed")).strip() == "re-queued 1 failed jobs"
    assert _jobs(db) == [("queued", 0)] * 2


def test_jobs_list_shows_errors_with_brackets_verbatim(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    db.add_members("acme", 1)
    assert _ok(cli("sync", "--tenant", "acme"))
    error = "HTTPError: 404 from GET [/v2/members] ([red] is not a colour)"
    db.execute("UPDATE jobs SET status = 'failed', last_error = :error WHERE name = 'member.sync'", {"error": error})
    assert error in _ok(cli("jobs", "list"))


# --- plug-ins ------------------------------------------------------------------------------------


def test_plugins_lists_the_loaded_providers(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _ok(cli("plugins"))
    assert "tests.cli.plugin_fixture:CrmProvider" in out
    assert "MEMBERSYNC_PLUGINS" in out
    assert "sync provider 'crm'" in out
    monkeypatch.setenv("MEMBERSYNC_PLUGINS", REGISTER_BOTH)
    assert "registration function" in _ok(cli("plugins"))
    monkeypatch.setenv("MEMBERSYNC_PLUGINS", "")
    assert "no plug-ins loaded" in _ok(cli("plugins"))


@pytest.mark.parametrize(
    ("plugins", "expected"),
    [
        pytest.param("no.such.module:Thing", ["'no.such.module:Thing'", "failed to import"], id="no-module"),
        pytest.param("tests.cli.plugin_fixture:Missing", ["'tests.cli.plugin_fixture:Missing'"], id="no-attribute"),
        pytest.param("tests.cli.plugin_fixture", ["expected 'package.module:name'"], id="no-colon"),
        pytest.param(BADLY_NAMED, [repr(BADLY_NAMED), "'Bad Name!'", "BadlyNamedProvider", ": name must"], id="name"),
        pytest.param(NOT_A_PROVIDER, [repr(NOT_A_PROVIDER), "not a sync provider"], id="not-a-provider"),
    ],
)
def test_a_broken_plugin_is_one_line(
    cli: Cli, db: Db, monkeypatch: pytest.MonkeyPatch, plugins: str, expected: list[str]
) -> None:
    monkeypatch.setenv("MEMBERSYNC_PLUGINS", plugins)
    for args in (("plugins",), ("tick",), ("sync", "--tenant", "acme")):
        result = cli(*args)
        assert result.code == 1, (args, result)
        line = result.error
        assert line.startswith("error: plugin "), line
        for fragment in expected:
            assert fragment in line
    assert set(db.counts().values()) == {0}


# --- hostile input -------------------------------------------------------------------------------

HOSTILE_SLUGS = [
    pytest.param("acme; touch pwned", id="semicolon"),
    pytest.param("$(touch pwned)", id="command-substitution"),
    pytest.param("`touch pwned`", id="backticks"),
    pytest.param("acme && touch pwned | cat > pwned", id="pipes"),
    pytest.param("../../etc/passwd", id="path"),
    pytest.param("acme'; DROP TABLE tenants; --", id="sql"),
    pytest.param("%s%n%x", id="format"),
    pytest.param("a" * 10_240, id="10kB"),
    pytest.param("açme", id="accent"),
    pytest.param("\uff41\uff43\uff4d\uff45", id="fullwidth"),
    pytest.param("\u0430cme", id="cyrillic-a"),
    pytest.param("acme\u202e", id="bidi-override"),
    pytest.param("\U0001f600", id="emoji"),
    pytest.param("zz\nerror: a forged second line", id="embedded-newline"),
    pytest.param("acme\r", id="carriage-return"),
    pytest.param("acme\n", id="trailing-newline"),
    pytest.param("[/]", id="markup-close"),
    pytest.param("[red]x[/red]", id="markup-tags"),
]


@pytest.mark.parametrize("slug", HOSTILE_SLUGS)
def test_hostile_tenant_slugs_are_refused_in_one_line(cli: Cli, db: Db, tmp_path: Path, slug: str) -> None:
    before = db.counts()
    created = cli("tenant", "create", slug)
    assert created.code == 2, created
    assert created.error.startswith(f"error: invalid tenant slug {slug!r}: ")
    for args in (("token", "create", "--tenant", slug), ("sync", "--tenant", slug)):
        result = cli(*args)
        assert result.code == 2, (args, result)
        assert result.error == f"error: unknown tenant {slug!r}"
        assert result.stdout == ""
    assert db.counts() == before
    assert not (tmp_path / "pwned").exists()
