"""The `membersync` commands and the entry point that turns expected errors into one line (exit 2 for bad input)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError

from membersync.app import create_app
from membersync.assembly import assemble
from membersync.cli import support
from membersync.cli.members import conflicts_app, dedupe, push
from membersync.cli.support import fail, load_settings, read_json, with_runtime
from membersync.db import migrate
from membersync.demo import run_demo
from membersync.errors import InvalidInput, MembersyncError
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.identity.settings import options_from
from membersync.jobs import ledger, outbox
from membersync.jobs.queue import AUDIENCE_SYNC_QUEUE, QUEUES, USER_SYNC_QUEUE, chunked
from membersync.logs import configure_logging
from membersync.models import JobStatus
from membersync.runtime import Runtime
from membersync.scheduling.service import run_tick, sync_now
from membersync.tenant import service as tenant_service
from membersync.worker import Worker, run_processes

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
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(token_app, name="token")
app.add_typer(jobs_app, name="jobs")
app.add_typer(conflicts_app, name="conflicts")
app.command("dedupe")(dedupe)
app.command("push")(push)

JOB_STATUSES = [status.value for status in JobStatus]
MAX_NAME_LENGTH = 255


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema to the latest migration."""
    settings = load_settings()
    migrate.upgrade(settings.effective_database_url)
    support.console.print(f"database at {migrate.current_revision(settings.effective_database_url)} (latest)")


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
        support.console.print(f"created tenant {tenant.slug} (id {tenant.id})", markup=False)

    with_runtime(work)


@tenant_app.command("identity")
def tenant_identity(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    file: Annotated[Path | None, typer.Option(help="JSON file: policies, thresholds, default_region.")] = None,
    reset: Annotated[bool, typer.Option(help="Back to the built-in defaults.")] = False,
) -> None:
    """Show or set how a tenant's records are matched and merged (see the README's Identity section)."""
    if file is not None and reset:
        raise InvalidInput("give --file or --reset, not both")
    settings = None if file is None else read_json(file)
    if settings is not None:
        options_from(settings)

    async def work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            found = await tenant_service.get_by_slug(session, tenant)
            if file is not None or reset:
                found.identity_settings = settings
            shown = found.identity_settings
        support.console.print(json.dumps(shown, indent=2) if shown is not None else "built-in defaults", markup=False)

    with_runtime(work)


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
        support.console.print(token, highlight=False)
        support.err_console.print("Store this token now: it cannot be shown again.")

    with_runtime(work)


async def _run_jobs_with_progress(runtime: Runtime, job_ids: list[int]) -> None:
    """Run the jobs this command queued (and only those) until none of them is due any more."""
    runner = runtime.runner()
    columns = (TextColumn("running jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=support.console) as bar:
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
        with Progress(TextColumn("dispatching"), BarColumn(), MofNCompleteColumn(), console=support.console) as bar:
            task = bar.add_task("providers", total=len(providers))
            dispatched: dict[str, int] = {}
            for item in providers:
                dispatched |= await sync_now(runtime, found, [item], force=force)
                bar.advance(task)
        for name, count in dispatched.items():
            support.console.print(f"{name}: {count} jobs queued", markup=False)
        if not wait:
            support.err_console.print("A running `membersync worker` processes them; or pass --wait.", markup=False)
            return
        async with runtime.database.read_sessions() as session:
            job_ids = await ledger.queued_ids(session, MEMBER_SYNC.name, found.id, list(dispatched))
        await _run_jobs_with_progress(runtime, job_ids)

    with_runtime(work)


@app.command("tick")
def tick() -> None:
    """Run the scheduler tick once: dispatch every due provider of every tenant (once per 5-minute window)."""

    async def work(runtime: Runtime) -> None:
        report = await run_tick(runtime)
        if not report.ran:
            support.console.print(f"window {report.window:%Y-%m-%d %H:%M} UTC already ticked: nothing to do")
            return
        for name, count in report.dispatched.items():
            support.console.print(f"{name}: {count} jobs queued", markup=False)
        support.console.print(
            f"tick {report.window:%H:%M} UTC: {report.jobs} jobs for {len(report.dispatched)} providers"
        )

    with_runtime(work)


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
        support.console.print(table)

    with_runtime(work)


@jobs_app.command("retry-failed")
def jobs_retry_failed() -> None:
    """Queue every failed job again, with a fresh set of attempts."""

    async def work(runtime: Runtime) -> None:
        async with runtime.unit_of_work() as session:
            by_queue = await ledger.retry_failed(session, runtime.clock.now())
            for queue_name, ids in by_queue.items():
                outbox.defer(session, queue_name, ids)
        support.console.print(f"re-queued {sum(len(ids) for ids in by_queue.values())} failed jobs")

    with_runtime(work)


def _queue(name: str) -> str:
    if name not in QUEUES:
        raise InvalidInput(f"--queue: unknown queue {name!r}; use one of {', '.join(QUEUES)}")
    return name


@app.command("worker")
def worker(
    threads: Annotated[int | None, typer.Option(min=1, max=256, help="Worker threads per process.")] = None,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (to use several cores).")] = 1,
    queue: Annotated[
        str, typer.Option(help=f"The queue to consume: {AUDIENCE_SYNC_QUEUE} (syncs) or {USER_SYNC_QUEUE} (pushes).")
    ] = AUDIENCE_SYNC_QUEUE,
    periodic: Annotated[
        bool | None, typer.Option(help="Also run the 5-minute tick and the sweeper (default: on audience-sync).")
    ] = None,
) -> None:
    """Run a worker on one queue until interrupted."""
    queue = _queue(queue)
    scheduler = queue == AUDIENCE_SYNC_QUEUE if periodic is None else periodic
    settings = load_settings()
    threads = threads or settings.worker_threads
    if processes == 1:
        Worker(settings, threads=threads, queue=queue, periodic=scheduler).run()
        return
    migrate.ensure_migrated(settings.effective_database_url)
    code = run_processes(processes, threads, periodic=scheduler, queue=queue)
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
    settings = load_settings()
    migrate.ensure_migrated(settings.effective_database_url)
    runtime, _ = assemble(settings)
    _server(runtime, host or settings.api_host, port or settings.api_port).run()


@app.command("up")
def up(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    threads: Annotated[int | None, typer.Option(min=1, max=256)] = None,
) -> None:
    """API, workers for both queues and the scheduler in one process: the embedded default's all-in-one mode."""
    settings = load_settings()
    migrate.ensure_migrated(settings.effective_database_url)
    runtime, _ = assemble(settings)
    server = _server(runtime, host or settings.api_host, port or settings.api_port)
    api = threading.Thread(target=server.run, name="membersync-api", daemon=True)
    api.start()
    pusher = Worker(settings, threads=1, queue=USER_SYNC_QUEUE, periodic=False)
    pusher.start()
    try:
        Worker(settings, threads=threads or settings.worker_threads, periodic=True).run()
    finally:
        pusher.stop()
        server.should_exit = True
        api.join(timeout=10)


@app.command("demo")
def demo(
    members: Annotated[int, typer.Option(min=1, max=100_000, help="Demo members to create.")] = 3000,
    threads: Annotated[int, typer.Option(min=1, max=64, help="Worker threads.")] = 4,
) -> None:
    """Run the whole pull-sync loop on the embedded default against an emulated CRM, then print a summary."""
    settings = load_settings()
    configure_logging("ERROR")
    summary = run_demo(settings, members=members, threads=threads, console=support.console)
    claims = summary.login.claims
    support.console.print(
        f"\nsynced {summary.synced} of {summary.dispatched}, retried {summary.retried} jobs "
        f"(+{summary.http_retries} HTTP retries), failed {summary.failed}, "
        f"{summary.seconds:.1f} s, {summary.rate:.0f} members/s"
    )
    support.console.print(
        f"login of {claims['email']}: {', '.join(f'{k} {v}' for k, v in summary.login.freshness.items())}; "
        f"JWT issued with entitlements {claims.get('entitlements')}"
    )


@app.command("plugins")
def plugins() -> None:
    """List the sync providers loaded, and where they came from."""
    runtime, loaded = assemble(load_settings())
    asyncio.run(runtime.aclose())
    table = Table("plug-in", "from", "provides")
    for plugin in loaded:
        table.add_row(Text(plugin.path), Text(plugin.origin), Text(plugin.provides))
    support.console.print(table if loaded else "no plug-ins loaded (set MEMBERSYNC_PLUGINS or install a package)")


def _usage_error(error: typer.TyperException) -> NoReturn:
    if type(error).__name__ == "NoArgsIsHelpError":
        support.err_console.print(error.format_message(), markup=False, highlight=False)
        sys.exit(2)
    fail(error.format_message(), int(getattr(error, "exit_code", 2) or 2))


def main() -> None:
    """Entry point: turns every expected error into one line on stderr (exit 2 for bad input)."""
    try:
        result = app(standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        fail("aborted", 130)
    except typer.TyperException as error:
        _usage_error(error)
    except MembersyncError as error:
        fail(error.message, 1 if error.status_code >= 500 and not isinstance(error, InvalidInput) else 2)
    except OperationalError as error:
        fail(f"database error: {str(error.orig).splitlines()[0]}", 1)
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":
    main()
