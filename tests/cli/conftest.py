"""Run the `membersync` command line in-process, as `membersync.cli.main()` runs it for a user.

`cli("tenant", "create", "acme")` returns `CliResult(code, stdout, stderr)`; `result.error` asserts that
stderr is exactly one line starting with `error: ` and returns it. The `db` fixture points the CLI at
the migrated, empty database of each kind (SQLite and PostgreSQL) and reads it back.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import structlog
from rich.console import Console
from sqlalchemy import Engine, Executable, text
from sqlalchemy.orm import Session

from membersync import cli as cli_module
from membersync.cli import support as cli_support
from membersync.config import Settings
from membersync.db.engine import open_database, open_sync_engine
from membersync.member.schemas import MemberCreate
from membersync.member.service import upsert_member
from membersync.tenant.service import get_by_slug
from tests.cli.plugin_fixture import CRM
from tests.conftest import TABLES


class CliResult(NamedTuple):
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one line on stderr, which must start with `error: `."""
        line = self.stderr.strip()
        assert line, f"nothing on stderr (exit {self.code}, stdout {self.stdout!r})"
        assert "\n" not in line, f"stderr is not one line: {self.stderr!r}"
        assert line.startswith("error: "), line
        return line


def _exit_code(error: SystemExit) -> int:
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)  # what the interpreter does with `sys.exit("message")`
    return 1


@dataclass
class Cli:
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> CliResult:
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "argv", ["membersync", *args])
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        httpx_level = logging.getLogger("httpx").level
        try:
            cli_module.main()
            code = 0
        except SystemExit as error:
            code = _exit_code(error)
        finally:
            # The CLI configures logging for its process, bound to the captured streams: undo that.
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
            logging.getLogger("httpx").setLevel(httpx_level)
            structlog.reset_defaults()
        out, err = self.capsys.readouterr()
        return CliResult(code, out, err)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> Cli:
    """The CLI with a clean environment: the embedded default in `data_dir`, the `crm` plug-in, no Redis.

    The log level is WARNING because at the default (INFO) Alembic's schema check writes two log lines
    on stderr before the error line; `test_errors_are_one_line_at_the_default_log_level` covers that.
    """
    for field in Settings.model_fields:
        monkeypatch.delenv(f"MEMBERSYNC_{field.upper()}", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray `.env` file is read
    monkeypatch.setenv("MEMBERSYNC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMBERSYNC_PLUGINS", CRM)
    monkeypatch.setenv("MEMBERSYNC_LOG_LEVEL", "WARNING")
    monkeypatch.setattr(cli_support, "console", Console(width=200, color_system=None, force_terminal=False))
    monkeypatch.setattr(
        cli_support, "err_console", Console(stderr=True, width=200, color_system=None, force_terminal=False)
    )
    return Cli(monkeypatch, capsys)


@dataclass(frozen=True)
class Db:
    """The database the CLI is pointed at, read and seeded from the test."""

    url: str
    engine: Engine

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), dict(params or {})).all())

    def all(self, statement: Executable) -> list[Any]:
        """Run an ORM statement, such as `select(Job.status)`, and return its rows."""
        with Session(self.engine) as session:
            return list(session.execute(statement).all())

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        assert len(rows) == 1, rows
        return rows[0][0]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(text(sql), dict(params or {}))

    def counts(self) -> dict[str, int]:
        """Rows per table: compare before and after to show that nothing was written."""
        return {table: int(self.scalar(f"SELECT count(*) FROM {table}")) for table in TABLES}

    def add_members(self, slug: str, count: int) -> list[int]:
        """Create `count` members of tenant `slug` through the member service; returns their ids."""

        async def add() -> list[int]:
            database = open_database(self.url)
            try:
                async with database.sessions() as session:
                    tenant = await get_by_slug(session, slug)
                    now = datetime.now(UTC)
                    ids = []
                    for index in range(count):
                        data = MemberCreate(email=f"member{index}@example.org")
                        member, _ = await upsert_member(session, tenant.id, data, now)
                        ids.append(member.id)
                    await session.commit()
                    return ids
            finally:
                await database.dispose()

        return asyncio.run(add())


@pytest.fixture
def db(cli: Cli, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    """The migrated, empty database of each kind, set as MEMBERSYNC_DATABASE_URL."""
    monkeypatch.setenv("MEMBERSYNC_DATABASE_URL", database_url)
    with open_db(database_url) as opened:
        yield opened


@contextmanager
def open_db(url: str) -> Iterator[Db]:
    engine = open_sync_engine(url)
    try:
        yield Db(url, engine)
    finally:
        engine.dispose()
