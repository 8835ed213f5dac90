"""Commands about a tenant's members: `dedupe`, `push` and `conflicts`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from membersync.cli import support
from membersync.cli.support import iso_time, with_runtime
from membersync.conflict import service as conflict_service
from membersync.conflict.schemas import Resolution
from membersync.destinations.contract import UnknownDestination
from membersync.duplicate import service as duplicate_service
from membersync.errors import InvalidInput
from membersync.push.service import start_push
from membersync.runtime import Runtime
from membersync.tenant import service as tenant_service

conflicts_app = typer.Typer(help="Fields waiting for a person to decide.", no_args_is_help=True)


def dedupe(tenant: Annotated[str, typer.Option(help="Tenant slug.")]) -> None:
    """Find possible duplicate members of a tenant (by blocking keys, not every pair) for review."""

    async def work(runtime: Runtime) -> None:
        async with runtime.database.read_sessions() as session:
            found = await tenant_service.get_by_slug(session, tenant)
        columns = (TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=support.err_console) as bar:
            task = bar.add_task("loading members", total=None)

            def progress(stage: str, members: int) -> None:
                description = "comparing within blocks" if stage == "loaded" else "done"
                bar.update(task, description=description, completed=members)

            async with runtime.unit_of_work() as session:
                summary = await duplicate_service.scan(session, found.id, runtime.clock.now(), progress=progress)
        support.console.print(
            f"scanned {summary.members} members: {summary.pairs} possible duplicate pairs, {summary.new_pairs} new "
            "(review them at GET /v1/duplicates)"
        )

    with_runtime(work)


def push(
    destination: Annotated[str, typer.Argument(help="Push destination name (see MEMBERSYNC_PUSH_URL).")],
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    since: Annotated[str | None, typer.Option(help="Members changed at or after this ISO time instead.")] = None,
) -> None:
    """Queue a tenant's changed members for a destination, in rate-limited batches on the user-sync queue."""
    changed_since = iso_time("--since", since)

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
        support.console.print(
            f"push {run.run_id}: {run.queued} of {run.selected} members in {len(run.batch_ids)} batches{due}; "
            f"skipped: {skipped}. Run `membersync worker --queue user-sync` (or `membersync up`) to send them."
        )

    with_runtime(work)


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
        support.console.print(table)

    with_runtime(work)


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
        support.console.print(
            f"conflict {conflict.id} resolved ({conflict.resolution}): {conflict.field} = {conflict.resolved_value!r}",
            markup=False,
        )

    with_runtime(work)
