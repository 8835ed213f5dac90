"""Shared helpers for the benchmarks: temporary databases, fast seeding, time bounds and the report file.

Only 127.0.0.1 is ever contacted: PostgreSQL at 127.0.0.1:5432 (database `test`) and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import os
import platform
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis import Redis
from sqlalchemy import create_engine, insert, text

from membersync.config import Settings
from membersync.db import migrate
from membersync.db.engine import open_sync_engine
from membersync.db.urls import sync_url
from membersync.logs import configure_logging
from membersync.models import Member, Tenant

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
POSTGRES_URL = "postgresql://127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
LOCALHOST = "127.0.0.1"
START_LOADAVG = os.getloadavg()
SEED_CHUNK = 2_000
DOC_HEADER = """# Benchmarks

Figures written by the scripts in `bench/` (each replaces only its own section, one per script and backend).
Run them with `uv run python bench/<name>.py [--backend sqlite|postgres]`; every script bounds its own run time,
creates its own temporary database (a SQLite file in a temporary directory, or a fresh PostgreSQL schema that is
dropped afterwards), gives its huey queues a `queue_namespace` of their own and deletes the Redis keys it created.
The machine is shared: the host load average is recorded with every section, and figures taken while other
processes keep the CPUs busy are slower than on an idle machine.
"""


class BenchTimeout(RuntimeError):
    """A benchmark ran past its own time bound."""


@dataclass
class Deadline:
    """A soft time bound checked by the benchmark's loops."""

    seconds: float
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def check(self, what: str) -> None:
        if self.remaining() <= 0:
            raise BenchTimeout(f"{what}: over the {self.seconds:.0f} s bound")


@contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Last resort: dump the stacks and exit if the process is still running `seconds` from now."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def quiet_logs() -> None:
    """Warnings and errors only: the benchmarks measure the work, not the log output."""
    configure_logging("WARNING", json=True)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--no-doc", action="store_true", help="print the figures without writing docs/benchmarks.md")
    return parser


# --- machine -------------------------------------------------------------------------------------


def _cpu_model() -> str:
    name = platform.processor()
    if name:
        return name
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def machine() -> str:
    return f"{_cpu_model()}, {os.cpu_count()} CPUs, {_ram_gib()} RAM, {platform.system()} {platform.release()}"


def code_version() -> str:
    """The commit the product code was measured at, marked when `membersync/` has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "membersync"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    dirty = " + uncommitted changes in membersync/" if status.stdout.strip() else ""
    return f"{commit.stdout.strip() or 'unknown'}{dirty}"


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


# --- databases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchDatabase:
    """A temporary database, its data directory, and a queue namespace of its own (unique huey queue names)."""

    backend: str
    url: str
    data_dir: Path
    namespace: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}-")

    def settings(self, *, redis: bool = False, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": self.url, "data_dir": self.data_dir, "redis_url": None}
        values["queue_namespace"] = self.namespace
        if redis:
            values["redis_url"] = REDIS_URL
        values.update(overrides)
        return Settings(_env_file=None, **values)


@contextmanager
def _postgres_schema() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(sync_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()


@contextmanager
def temp_database(backend: str) -> Iterator[BenchDatabase]:
    """A migrated, empty database: a SQLite file in a temporary directory, or a fresh PostgreSQL schema."""
    with tempfile.TemporaryDirectory(prefix="membersync-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        if backend == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'membersync.db'}"
            migrate.upgrade(url)
            yield BenchDatabase(backend, url, data_dir)
            return
        with _postgres_schema() as url:
            migrate.upgrade(url)
            yield BenchDatabase(backend, url, data_dir)


def seed_tenant(url: str, slug: str = "bench") -> int:
    engine = open_sync_engine(url)
    try:
        with engine.begin() as connection:
            statement = insert(Tenant).values(slug=slug, name=slug, created_at=datetime.now(UTC))
            return int(connection.execute(statement.returning(Tenant.id)).scalar_one())
    finally:
        engine.dispose()


def _member_rows(tenant_id: int, start: int, stop: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": tenant_id,
            "email": f"bench{index:07d}@example.org",
            "name": f"Bench {index}",
            "status": "active",
            "attributes": {},
            "last_active_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for index in range(start, stop)
    ]


def seed_members(url: str, tenant_id: int, count: int) -> float:
    """Insert `count` members (active now), one Core `INSERT` executed for each chunk of rows; returns seconds.

    An executemany of `insert(Member)` is ~8x faster here than `insert(Member).values(rows)`, whose
    compilation of thousands of bound parameters dominates.
    """
    started = time.perf_counter()
    now = datetime.now(UTC)
    engine = open_sync_engine(url)
    try:
        with engine.begin() as connection:
            for start in range(0, count, SEED_CHUNK):
                rows = _member_rows(tenant_id, start, min(start + SEED_CHUNK, count), now)
                connection.execute(insert(Member), rows)
    finally:
        engine.dispose()
    return time.perf_counter() - started


# --- Redis ---------------------------------------------------------------------------------------


def huey_key_pattern(settings: Settings, queue: str) -> str:
    """The keys RedisHuey uses for `queue` (huey strips everything but [A-Za-z0-9_] from the name)."""
    return f"huey.*{re.sub('[^A-Za-z0-9_]', '', settings.queue_namespace + queue)}*"


def _redis_client(url: str) -> Redis:
    if urlsplit(url).hostname != LOCALHOST:
        raise ValueError(f"benchmarks only talk to {LOCALHOST}, not {url}")
    return Redis.from_url(url)


def delete_redis_keys(url: str, pattern: str) -> None:
    """Delete the keys matching `pattern` (one this benchmark's own namespace makes its own)."""
    client = _redis_client(url)
    try:
        created = client.keys(pattern)
        if created:
            client.delete(*created)
    finally:
        client.close()


@contextmanager
def redis_queue_keys(settings: Settings, queue: str) -> Iterator[Redis]:
    """Refuse to start when the queue's huey keys exist already; delete the ones this run created at the end.

    The benchmark's settings carry a queue namespace of their own, so the keys are never another process's.
    """
    assert settings.redis_url is not None
    client = _redis_client(settings.redis_url)
    pattern = huey_key_pattern(settings, queue)
    try:
        existing = client.keys(pattern)
        if existing:
            raise RuntimeError(f"Redis already holds {sorted(existing)!r}: another process uses this queue")
        try:
            yield client
        finally:
            created = [key if isinstance(key, str) else key.decode() for key in client.keys(pattern)]
            if created:
                client.delete(*created)
            print(f"deleted Redis keys {sorted(created)}")
    finally:
        client.close()


# --- child processes -----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the benchmark dies, so nothing outlives it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(args: Sequence[str], *, stdout: Any = subprocess.PIPE, **kwargs: Any) -> subprocess.Popen[str]:
    """Start `python args…` with this interpreter; it is killed if this process dies."""
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen([sys.executable, *args], text=True, stdout=stdout, preexec_fn=preexec, cwd=ROOT, **kwargs)


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The child's next stdout line, or an error if none comes within `timeout` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise BenchTimeout(f"process {process.pid} printed nothing within {timeout:.0f} s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"process {process.pid} exited with {process.wait(5)}")
    return line.strip()


@contextmanager
def preserved_signals() -> Iterator[None]:
    """A started huey consumer installs SIGINT/SIGTERM/SIGHUP handlers in this process; put the old ones back."""
    signums = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    saved = {signum: signal.getsignal(signum) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def stop_process(process: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Terminate the child by its PID, then kill it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


# --- figures and the report file -----------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of `values` (share in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def section(title: str, backend: str, load: str, body: str) -> str:
    """A report section: the title, the run's context, then the figures and notes in `body`."""
    context = [
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Python: {python_version()}; code: commit {code_version()}",
        f"- Backend: {backend}",
        f"- Load: {load}",
        f"- Host 1-min load average at start / at end: {START_LOADAVG[0]:.2f} / {os.getloadavg()[0]:.2f}"
        f" (other processes share the {os.cpu_count()} CPUs; figures are noisier when it is high)",
    ]
    return f"## {title}\n\n" + "\n".join(context) + "\n\n" + body.strip() + "\n"


def write_section(name: str, content: str) -> None:
    """Replace the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`, or append it."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{content.strip()}\n{end}"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    current = DOC.read_text() if DOC.exists() else DOC_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(updated)
    print(f"wrote section {name!r} to {DOC.relative_to(ROOT)}")


def publish(name: str, content: str, *, enabled: bool) -> None:
    print()
    print(content)
    if enabled:
        write_section(name, content)
