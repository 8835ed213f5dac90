"""`membersync dedupe` and `membersync conflicts list|resolve`, run in-process against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import insert, select

from membersync.assembly import assemble
from membersync.clock import FrozenClock
from membersync.config import Settings
from membersync.identity.schemas import MappedRecord
from membersync.identity.service import apply_records
from membersync.jobs.queue import InMemoryQueue
from membersync.models import AuditEntry, Conflict, Member
from membersync.runtime import Runtime
from membersync.tenant.service import create_tenant
from tests.cli.conftest import Cli, CliResult, Db

T = TypeVar("T")
T0 = datetime(2026, 3, 1, tzinfo=UTC)
REVIEW_TABLES = ("members", "conflicts", "audit_entries", "duplicate_pairs", "tenants")


def _seed(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run `work` on a runtime of its own over the database the CLI uses, as the product writes."""

    async def run() -> T:
        runtime, _ = assemble(settings, clock=FrozenClock(), queue=InMemoryQueue())
        runtime.tracker.registry.register_source("crm")
        try:
            return await work(runtime)
        finally:
            await runtime.aclose()

    return asyncio.run(run())


def _with_conflicts(settings: Settings, *names: str, slug: str = "acme") -> list[int]:
    """Tenant `slug` with one member per name whose CRM record changed its email: the pending conflicts' ids."""

    async def work(runtime: Runtime) -> list[int]:
        now = runtime.clock.now()
        async with runtime.unit_of_work() as session:
            tenant = await create_tenant(session, slug, None, now)
        for minutes, email in ((0, "{}@example.org"), (1, "{}@new.example")):
            for name in names:
                record = MappedRecord(
                    values={"email": email.format(name)}, external_id=name, changed_at=T0 + timedelta(minutes=minutes)
                )
                async with runtime.unit_of_work() as session:
                    await apply_records(session, runtime.tracker, tenant.id, "crm", [record], now)
        async with runtime.database.read_sessions() as session:
            statement = select(Conflict.id).where(Conflict.tenant_id == tenant.id).order_by(Conflict.id)
            return list(await session.scalars(statement))

    return _seed(settings, work)


def _with_near_duplicates(settings: Settings) -> None:
    """Tenant acme with two spellings of one person sharing a phone, and someone else."""

    async def work(runtime: Runtime) -> None:
        now = runtime.clock.now()
        people = [
            ("Jonathan", "Smith", "+442079460011"),
            ("Jonathon", "Smith", "+442079460011"),
            ("Alan", "Turing", None),
        ]
        async with runtime.unit_of_work() as session:
            tenant = await create_tenant(session, "acme", None, now)
            rows = [
                {"tenant_id": tenant.id, "email": f"m{index}@example.org", "given_name": given, "family_name": family}
                | {"name": f"{given} {family}", "phone": phone, "status": "active", "attributes": {}}
                | {"created_at": now, "updated_at": now}
                for index, (given, family, phone) in enumerate(people)
            ]
            await session.execute(insert(Member), rows)

    _seed(settings, work)


def _snapshot(db: Db) -> dict[str, list[Any]]:
    return {table: db.rows(f"SELECT * FROM {table} ORDER BY id") for table in REVIEW_TABLES}


def _ok(result: CliResult) -> str:
    assert result.code == 0, result
    assert result.stderr == "" or "error" not in result.stderr, result
    return result.stdout


def _table_rows(out: str) -> list[list[str]]:
    """The body rows of the table `conflicts list` draws, as cell texts."""
    lines = [line for line in out.splitlines() if line.startswith("│")]  # the header row is drawn with "┃"
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]


def _email(db: Db) -> str:
    [(email,)] = db.all(select(Member.email))
    return str(email)


def _conflict(db: Db, conflict_id: int) -> Conflict:
    [(conflict,)] = db.all(select(Conflict).where(Conflict.id == conflict_id))
    assert isinstance(conflict, Conflict)
    return conflict


# --- dedupe --------------------------------------------------------------------------------------------------------


def test_dedupe_prints_the_counts_and_records_each_pair_once(cli: Cli, db: Db, settings: Settings) -> None:
    _with_near_duplicates(settings)
    summary = "scanned 3 members: 1 possible duplicate pairs, {} new (review them at GET /v1/duplicates)"
    assert _ok(cli("dedupe", "--tenant", "acme")).strip().splitlines()[-1] == summary.format(1)
    assert _ok(cli("dedupe", "--tenant", "acme")).strip().splitlines()[-1] == summary.format(0)
    [(first, second, status)] = db.rows("SELECT first_member_id, second_member_id, status FROM duplicate_pairs")
    assert (first < second, status) == (True, "pending")


def test_dedupe_of_an_empty_tenant(cli: Cli, db: Db) -> None:
    assert _ok(cli("tenant", "create", "acme"))
    assert "scanned 0 members: 0 possible duplicate pairs, 0 new" in _ok(cli("dedupe", "--tenant", "acme"))


# --- conflicts list ------------------------------------------------------------------------------------------------


def test_conflicts_list_shows_a_row_per_pending_conflict(cli: Cli, db: Db, settings: Settings) -> None:
    ada, grace, mary = _with_conflicts(settings, "ada", "grace", "mary")
    assert _ok(cli("conflicts", "resolve", str(mary), "--tenant", "acme", "--keep"))
    out = _ok(cli("conflicts", "list", "--tenant", "acme"))
    rows = _table_rows(out)
    assert [(row[0], row[2], row[3], row[4], row[5], row[7]) for row in rows] == [
        (str(ada), "email", "crm", "ada@example.org", "ada@new.example", "pending"),
        (str(grace), "email", "crm", "grace@example.org", "grace@new.example", "pending"),
    ]
    assert rows[0][6] == "policy manual: a person decides"
    resolved = _ok(cli("conflicts", "list", "--tenant", "acme", "--status", "resolved"))
    assert [(row[0], row[7]) for row in _table_rows(resolved)] == [(str(mary), "resolved")]
    limited = _ok(cli("conflicts", "list", "--tenant", "acme", "--limit", "1"))
    assert [row[0] for row in _table_rows(limited)] == [str(ada)]


def test_conflicts_list_shows_only_the_named_tenant(cli: Cli, db: Db, settings: Settings) -> None:
    _with_conflicts(settings, "ada", slug="other")
    assert _ok(cli("tenant", "create", "acme"))
    assert _table_rows(_ok(cli("conflicts", "list", "--tenant", "acme"))) == []


# --- conflicts resolve ---------------------------------------------------------------------------------------------


def test_resolve_accept_takes_the_incoming_value_and_audits_the_cli(cli: Cli, db: Db, settings: Settings) -> None:
    [conflict_id] = _with_conflicts(settings, "ada")
    out = _ok(cli("conflicts", "resolve", str(conflict_id), "--tenant", "acme", "--accept"))
    assert out.strip() == f"conflict {conflict_id} resolved (accept_incoming): email = 'ada@new.example'"
    assert _email(db) == "ada@new.example"
    conflict = _conflict(db, conflict_id)
    assert (conflict.status, conflict.resolution, conflict.resolved_by) == ("resolved", "accept_incoming", "cli")
    [entry] = [row for (row,) in db.all(select(AuditEntry)) if row.operation == "resolve"]
    assert entry.changes == {"email": ["ada@example.org", "ada@new.example"]}
    assert (entry.actor, entry.source) == ("cli", "crm")


def test_resolve_keep_leaves_the_member_alone(cli: Cli, db: Db, settings: Settings) -> None:
    [conflict_id] = _with_conflicts(settings, "ada")
    columns = "SELECT id, email, name, given_name, family_name, phone, time_zone, status, tier FROM members"
    members = db.rows(columns)
    out = _ok(cli("conflicts", "resolve", str(conflict_id), "--tenant", "acme", "--keep"))
    assert out.strip() == f"conflict {conflict_id} resolved (keep_current): email = 'ada@example.org'"
    assert db.rows(columns) == members
    assert (_conflict(db, conflict_id).status, _conflict(db, conflict_id).resolution) == ("resolved", "keep_current")


def test_resolve_set_normalises_the_value(cli: Cli, db: Db, settings: Settings) -> None:
    [conflict_id] = _with_conflicts(settings, "ada")
    out = _ok(cli("conflicts", "resolve", str(conflict_id), "--tenant", "acme", "--set", " NEW@Example.org "))
    assert out.strip() == f"conflict {conflict_id} resolved (set_value): email = 'new@example.org'"
    assert _email(db) == "new@example.org"
    assert _conflict(db, conflict_id).resolved_value == "new@example.org"


def test_bad_input_exits_2_with_one_line_and_changes_nothing(cli: Cli, db: Db, settings: Settings) -> None:
    conflict_id, _ = _with_conflicts(settings, "ada", "bob")
    [foreign_id] = _with_conflicts(settings, "grace", slug="other")
    cid = str(conflict_id)
    cases: list[tuple[tuple[str, ...], str]] = [
        (("conflicts", "list", "--tenant", "ghost"), "error: unknown tenant 'ghost'"),
        (("conflicts", "list", "--tenant", "acme", "--status", "exploded"), "unknown conflict status 'exploded'"),
        (("conflicts", "list", "--tenant", "acme", "--limit", "0"), "limit"),
        (("conflicts", "resolve", cid, "--tenant", "ghost", "--accept"), "error: unknown tenant 'ghost'"),
        (("conflicts", "resolve", cid, "--tenant", "acme", "--keep", "--accept"), "exactly one of"),
        (("conflicts", "resolve", cid, "--tenant", "acme", "--accept", "--set", "x@example.org"), "exactly one of"),
        (("conflicts", "resolve", cid, "--tenant", "acme", "--keep", "--set", "x@example.org"), "exactly one of"),
        (("conflicts", "resolve", cid, "--tenant", "acme"), "exactly one of"),
        (("conflicts", "resolve", cid, "--tenant", "acme", "--set", "not an email"), "error: value: "),
        (("conflicts", "resolve", cid, "--tenant", "acme", "--set", ""), "error: value: "),
        (("conflicts", "resolve", cid, "--tenant", "acme", "--set", "BOB@example.org"), "belongs to member"),
        (("conflicts", "resolve", "abc", "--tenant", "acme", "--keep"), "conflict_id"),
        (("conflicts", "resolve", "0", "--tenant", "acme", "--keep"), "conflict_id"),
        (("conflicts", "resolve", str(2**63), "--tenant", "acme", "--keep"), "conflict_id"),
        (("conflicts", "resolve", "999999", "--tenant", "acme", "--keep"), "error: conflict 999999 not found"),
        (("conflicts", "resolve", str(foreign_id), "--tenant", "acme", "--accept"), f"conflict {foreign_id} not found"),
        (("conflicts", "resolve", cid, "--keep", "--accept"), "--tenant"),
    ]
    before = _snapshot(db)
    for args, message in cases:
        result = cli(*args)
        assert result.code == 2, (args, result)
        assert message in result.error, (args, result.error)
        assert result.stdout == "", args
    assert _snapshot(db) == before


def test_resolving_twice_exits_2(cli: Cli, db: Db, settings: Settings) -> None:
    [conflict_id] = _with_conflicts(settings, "ada")
    assert _ok(cli("conflicts", "resolve", str(conflict_id), "--tenant", "acme", "--keep"))
    before = _snapshot(db)
    result = cli("conflicts", "resolve", str(conflict_id), "--tenant", "acme", "--accept")
    assert result.code == 2, result
    assert result.error == f"error: conflict {conflict_id} is already resolved"
    assert _snapshot(db) == before


def test_dedupe_of_an_unknown_tenant_is_one_line(cli: Cli, db: Db) -> None:
    result = cli("dedupe", "--tenant", "ghost")
    assert result.code == 2, result
    assert result.error == "error: unknown tenant 'ghost'"
