"""The `membersync` command line. Bad input exits 2 with one line saying what is wrong."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError

from membersync.app import create_app
from membersync.assembly import assemble
from membersync.config import Settings
from membersync.conflict import service as conflict_service
from membersync.conflict.schemas import Resolution
from membersync.db import migrate
from membersync.demo import run_demo
from membersync.destinations.contract import UnknownDestination
from membersync.duplicate import service as duplicate_service
from membersync.errors import InvalidInput, MembersyncError
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.identity.settings import options_from
from membersync.jobs import ledger, outbox
from membersync.jobs.queue import chunked
from membersync.logs import configure_logging
from membersync.models import JobStatus
from membersync.push.service import start_push
from membersync.runtime import Runtime
from membersync.scheduling.service import run_tick, sync_now
from membersync.tenant import service as tenant_service
from membersync.worker import Worker, run_processes

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="membersync",
    help="Keep a local system of record of members in sync with external platforms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
jobs_app = typer.Typer(help="The job ledger.", no_args_is_help=True)
conflicts_app = typer.Typer(help="Fields waiting for a person to decide.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(token_app, name="token")
app.add_typer(jobs_app, name="jobs")
app.add_typer(conflicts_app, name="conflicts")

JOB_STATUSES = [status.value for status in JobStatus]
MAX_NAME_LENGTH = 255


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json or None)
    return settings


def _with_runtime(work: Callable[[Runtime], Awaitable[T]], *, settings: Settings | None = None) -> T:
    settings = settings or _settings()
    migrate.ensure_migrated(settings.effective_database_url)

    async def run() -> T:
        runtime, _ = assemble(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.aclose()

    return asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema to the latest migration."""
    settings = _settings()
    migrate.upgrade(settings.effective_database_url)
    console.print(f"database at {migrate.current_revision(settings.effective_database_url)} (latest)")


def _check_name(name: str | None) -> None:
    if name is not None and (not name.strip() or len(name) > MAX_NAME_LENGTH or not name.isprintable()):
        raise InvalidInput(f"--name must be 1-{MAX_NAME_LENGTH} printable characters")


@tenant_app.command("create")
def tenant_create(slug: str, name: Annotated[str | None, typer.Option(help="Display name.")] = None) -> None:
    """Create a tenant."""
    _check_name(name)

    async def work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            tenant = await tenant_service.create_tenant(session, slug, name, runtime.clock.now())
        console.print(f"created tenant {tenant.slug} (id {tenant.id})", markup=False)

    _with_runtime(work)


@tenant_app.command("identity")
def tenant_identity(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    file: Annotated[Path | None, typer.Option(help="JSON file: policies, thresholds, default_region.")] = None,
    reset: Annotated[bool, typer.Option(help="Back to the built-in defaults.")] = False,
) -> None:
    """Show or set how a tenant's records are matched and merged (see the README's Identity section)."""
    if file is not None and reset:
        raise InvalidInput("give --file or --reset, not both")
    settings = None if file is None else _read_json(file)
    if settings is not None:
        options_from(settings)

    async def work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            found = await tenant_service.get_by_slug(session, tenant)
            if file is not None or reset:
                found.identity_settings = settings
            shown = found.identity_settings
        console.print(json.dumps(shown, indent=2) if shown is not None else "built-in defaults", markup=False)

    _with_runtime(work)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"--file: cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(f"--file: {path} is not JSON: {error}") from None


@token_app.command("create")
def token_create(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
) -> None:
    """Create an API token for a tenant. It is shown once; only its hash is stored."""
    _check_name(name)

    async def work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            found = await tenant_service.get_by_slug(session, tenant)
            token = await tenant_service.create_token(session, found, name, runtime.clock.now())
        console.print(token, highlight=False)
        err_console.print("Store this token now: it cannot be shown again.")

    _with_runtime(work)


async def _run_jobs_with_progress(runtime: Runtime, job_ids: list[int]) -> None:
    """Run the jobs this command queued (and only those) until none of them is due any more."""
    runner = runtime.runner()
    columns = (TextColumn("running jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("jobs", total=len(job_ids))
        claimed = True
        while claimed:
            claimed = False
            for batch in chunked(job_ids, runtime.settings.job_batch_size):
                report = await runner.run_batch(batch)
                claimed = claimed or bool(report.claimed)
                bar.advance(task, report.succeeded + report.failed)


@app.command("sync")
def sync(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    provider: Annotated[str | None, typer.Argument(help="One provider; all available ones when omitted.")] = None,
    force: Annotated[bool, typer.Option(help="Sync even members whose data is fresh.")] = False,
    wait: Annotated[
        bool, typer.Option(help="Run the jobs in this process instead of leaving them to workers.")
    ] = False,
) -> None:
    """Dispatch a sync now: writes the same sync_runs row and queues the same jobs as the tick."""

    async def work(runtime: Runtime) -> None:
        async with runtime.database.read_sessions() as session:
            found = await tenant_service.get_by_slug(session, tenant)
        providers = [runtime.providers.get(provider)] if provider else runtime.providers.available_for_tenant(found)
        if provider and not providers[0].is_available_for_tenant(found):
            raise InvalidInput(f"provider {provider!r} is not available for tenant {tenant!r}")
        with Progress(TextColumn("dispatching"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
            task = bar.add_task("providers", total=len(providers))
            dispatched: dict[str, int] = {}
            for item in providers:
                dispatched |= await sync_now(runtime, found, [item], force=force)
                bar.advance(task)
        for name, count in dispatched.items():
            console.print(f"{name}: {count} jobs queued", markup=False)
        if not wait:
            err_console.print("A running `membersync worker` processes them; or pass --wait.", markup=False)
            return
        async with runtime.database.read_sessions() as session:
            job_ids = await ledger.queued_ids(session, MEMBER_SYNC.name, found.id, list(dispatched))
        await _run_jobs_with_progress(runtime, job_ids)

    _with_runtime(work)


@app.command("tick")
def tick() -> None:
    """Run the scheduler tick once: dispatch every due provider of every tenant (once per 5-minute window)."""

    async def work(runtime: Runtime) -> None:
        report = await run_tick(runtime)
        if not report.ran:
            console.print(f"window {report.window:%Y-%m-%d %H:%M} UTC already ticked: nothing to do")
            return
        for name, count in report.dispatched.items():
            console.print(f"{name}: {count} jobs queued", markup=False)
        console.print(f"tick {report.window:%H:%M} UTC: {report.jobs} jobs for {len(report.dispatched)} providers")

    _with_runtime(work)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help=f"One of: {', '.join(JOB_STATUSES)}.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """List the newest jobs in the ledger."""
    if status is not None and status not in JOB_STATUSES:
        raise InvalidInput(f"unknown job status {status!r}: use one of {', '.join(JOB_STATUSES)}")

    async def work(runtime: Runtime) -> None:
        async with runtime.database.read_sessions() as session:
            jobs = await ledger.list_jobs(session, status, limit)
        table = Table("id", "job", "status", "tries", "tenant", "entity", "target", "run at", "last error")
        for job in jobs:
            cells = (
                str(job.id),
                job.name,
                job.status,
                f"{job.attempts}/{job.max_attempts}",
                str(job.tenant_id or ""),
                str(job.entity_id or ""),
                job.target or "",
                f"{job.run_at:%Y-%m-%d %H:%M:%S}",
                (job.last_error or "")[:80],
            )
            table.add_row(*(Text(cell) for cell in cells))
        console.print(table)

    _with_runtime(work)


@jobs_app.command("retry-failed")
def jobs_retry_failed() -> None:
    """Queue every failed job again, with a fresh set of attempts."""

    async def work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            by_queue = await ledger.retry_failed(session, runtime.clock.now())
            for queue_name, ids in by_queue.items():
                outbox.defer(session, queue_name, ids)
        console.print(f"re-queued {sum(len(ids) for ids in by_queue.values())} failed jobs")

    _with_runtime(work)


@app.command("dedupe")
def dedupe(tenant: Annotated[str, typer.Option(help="Tenant slug.")]) -> None:
    """Find possible duplicate members of a tenant (by blocking keys, not every pair) for review."""

    async def work(runtime: Runtime) -> None:
        async with runtime.database.read_sessions() as session:
            found = await tenant_service.get_by_slug(session, tenant)
        columns = (TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err_console) as bar:
            task = bar.add_task("loading members", total=None)

            def progress(stage: str, members: int) -> None:
                description = "comparing within blocks" if stage == "loaded" else "done"
                bar.update(task, description=description, completed=members)

            async with runtime.unit_of_work() as session:
                summary = await duplicate_service.scan(session, found.id, runtime.clock.now(), progress=progress)
        console.print(
            f"scanned {summary.members} members: {summary.pairs} possible duplicate pairs, {summary.new_pairs} new "
            "(review them at GET /v1/duplicates)"
        )

    _with_runtime(work)


@app.command("push")
def push(
    destination: Annotated[str, typer.Argument(help="Push destination name (see MEMBERSYNC_PUSH_URL).")],
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    since: Annotated[str | None, typer.Option(help="Members changed at or after this ISO time instead.")] = None,
) -> None:
    """Queue a tenant's changed members for a destination, in rate-limited batches on the user-sync queue."""
    changed_since = _iso_time("--since", since)

    async def work(runtime: Runtime) -> None:
        try:
            target = runtime.destinations.get(destination)
        except UnknownDestination as error:
            raise InvalidInput(f"{error}; set MEMBERSYNC_PUSH_URL and MEMBERSYNC_PUSH_API_KEY") from None
        async with runtime.unit_of_work() as session:
            found = await tenant_service.get_by_slug(session, tenant)
            run = await start_push(session, target, found.id, runtime.clock.now(), since=changed_since)
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(run.skipped.items())) or "none"
        due = f", due {run.first_due:%Y-%m-%d %H:%M:%S} to {run.last_due:%Y-%m-%d %H:%M:%S} UTC" if run.last_due else ""
        console.print(
            f"push {run.run_id}: {run.queued} of {run.selected} members in {len(run.batch_ids)} batches{due}; "
            f"skipped: {skipped}. Run `membersync worker` to send them."
        )

    _with_runtime(work)


def _iso_time(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option}: not an ISO 8601 time, e.g. 2026-11-22T10:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


CONFLICT_STATUSES = list(conflict_service.STATUSES)


@conflicts_app.command("list")
def conflicts_list(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    status: Annotated[str, typer.Option(help=f"One of: {', '.join(CONFLICT_STATUSES)}.")] = "pending",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List a tenant's conflicts, oldest first."""
    if status not in CONFLICT_STATUSES:
        raise InvalidInput(f"unknown conflict status {status!r}: use one of {', '.join(CONFLICT_STATUSES)}")

    async def work(runtime: Runtime) -> None:
        async with runtime.database.read_sessions() as session:
            found = await tenant_service.get_by_slug(session, tenant)
            items, _ = await conflict_service.list_conflicts(session, found.id, cursor=None, limit=limit, status=status)
        table = Table("id", "member", "field", "source", "current", "incoming", "reason", "status")
        for item in items:
            cells = (item.id, item.member_id, item.field, item.source, item.current_value, item.incoming_value)
            table.add_row(*(Text(str(cell)[:60]) for cell in (*cells, item.reason, item.status)))
        console.print(table)

    _with_runtime(work)


@conflicts_app.command("resolve")
def conflicts_resolve(
    conflict_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1)],
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    keep: Annotated[bool, typer.Option("--keep", help="Keep the member's current value.")] = False,
    accept: Annotated[bool, typer.Option("--accept", help="Take the incoming value.")] = False,
    value: Annotated[str | None, typer.Option("--set", help="Set this value instead.")] = None,
) -> None:
    """Settle a conflict: exactly one of --keep, --accept or --set VALUE."""
    options: list[tuple[Resolution, bool]] = [
        ("keep_current", keep),
        ("accept_incoming", accept),
        ("set_value", value is not None),
    ]
    chosen = [name for name, on in options if on]
    if len(chosen) != 1:
        raise InvalidInput("resolution: give exactly one of --keep, --accept or --set VALUE")

    async def work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            found = await tenant_service.get_by_slug(session, tenant)
            conflict = await conflict_service.resolve(
                session,
                found.id,
                conflict_id,
                chosen[0],
                runtime.clock.now(),
                actor="cli",
                value=value,
            )
        console.print(
            f"conflict {conflict.id} resolved ({conflict.resolution}): {conflict.field} = {conflict.resolved_value!r}",
            markup=False,
        )

    _with_runtime(work)


@app.command("worker")
def worker(
    threads: Annotated[int | None, typer.Option(min=1, max=256, help="Worker threads per process.")] = None,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (to use several cores).")] = 1,
    periodic: Annotated[bool, typer.Option(help="Also run the 5-minute tick and the sweeper.")] = True,
) -> None:
    """Run a worker on the audience-sync queue until interrupted."""
    settings = _settings()
    threads = threads or settings.worker_threads
    if processes == 1:
        Worker(settings, threads=threads, periodic=periodic).run()
        return
    migrate.ensure_migrated(settings.effective_database_url)
    code = run_processes(processes, threads, periodic=periodic)
    if code:
        raise typer.Exit(code)


def _server(runtime: Runtime, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(create_app(runtime, owns_runtime=True), host=host, port=port, log_level="info")
    return uvicorn.Server(config)


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
) -> None:
    """Serve the HTTP API."""
    settings = _settings()
    migrate.ensure_migrated(settings.effective_database_url)
    runtime, _ = assemble(settings)
    _server(runtime, host or settings.api_host, port or settings.api_port).run()


@app.command("up")
def up(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    threads: Annotated[int | None, typer.Option(min=1, max=256)] = None,
) -> None:
    """API, worker and scheduler in one process: the embedded default's all-in-one mode."""
    settings = _settings()
    migrate.ensure_migrated(settings.effective_database_url)
    runtime, _ = assemble(settings)
    server = _server(runtime, host or settings.api_host, port or settings.api_port)
    api = threading.Thread(target=server.run, name="membersync-api", daemon=True)
    api.start()
    try:
        Worker(settings, threads=threads or settings.worker_threads, periodic=True).run()
    finally:
        server.should_exit = True
        api.join(timeout=10)


@app.command("demo")
def demo(
    members: Annotated[int, typer.Option(min=1, max=100_000, help="Demo members to create.")] = 3000,
    threads: Annotated[int, typer.Option(min=1, max=64, help="Worker threads.")] = 4,
) -> None:
    """Run the whole pull-sync loop on the embedded default against an emulated CRM, then print a summary."""
    settings = _settings()
    configure_logging("ERROR")
    summary = run_demo(settings, members=members, threads=threads, console=console)
    claims = summary.login.claims
    console.print(
        f"\nsynced {summary.synced} of {summary.dispatched}, retried {summary.retried} jobs "
        f"(+{summary.http_retries} HTTP retries), failed {summary.failed}, "
        f"{summary.seconds:.1f} s, {summary.rate:.0f} members/s"
    )
    console.print(
        f"login of {claims['email']}: {', '.join(f'{k} {v}' for k, v in summary.login.freshness.items())}; "
        f"JWT issued with entitlements {claims.get('entitlements')}"
    )


@app.command("plugins")
def plugins() -> None:
    """List the sync providers loaded, and where they came from."""
    runtime, loaded = assemble(_settings())
    asyncio.run(runtime.aclose())
    table = Table("plug-in", "from", "provides")
    for plugin in loaded:
        table.add_row(Text(plugin.path), Text(plugin.origin), Text(plugin.provides))
    console.print(table if loaded else "no plug-ins loaded (set MEMBERSYNC_PLUGINS or install a package)")


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage_error(error: typer.TyperException) -> NoReturn:
    if type(error).__name__ == "NoArgsIsHelpError":
        err_console.print(error.format_message(), markup=False, highlight=False)
        sys.exit(2)
    _fail(error.format_message(), int(getattr(error, "exit_code", 2) or 2))


def main() -> None:
    """Entry point: turns every expected error into one line on stderr (exit 2 for bad input)."""
    try:
        result = app(standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except typer.TyperException as error:
        _usage_error(error)
    except MembersyncError as error:
        _fail(error.message, 1 if error.status_code >= 500 and not isinstance(error, InvalidInput) else 2)
    except OperationalError as error:
        _fail(f"database error: {str(error.orig).splitlines()[0]}", 1)
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":
    main()
