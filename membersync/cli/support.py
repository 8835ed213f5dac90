"""What every command shares: the consoles, settings, a runtime for one command, and one-line errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from rich.console import Console

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.db import migrate
from membersync.errors import InvalidInput
from membersync.logs import configure_logging
from membersync.runtime import Runtime

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json or None)
    return settings


def with_runtime(work: Callable[[Runtime], Awaitable[T]], *, settings: Settings | None = None) -> T:
    settings = settings or load_settings()
    migrate.ensure_migrated(settings.effective_database_url)

    async def run() -> T:
        runtime, _ = assemble(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.aclose()

    return asyncio.run(run())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"--file: cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(f"--file: {path} is not JSON: {error}") from None


def iso_time(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option}: not an ISO 8601 time, e.g. 2026-11-22T10:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def fail(message: str, code: int) -> NoReturn:
    err_console.print(f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)
