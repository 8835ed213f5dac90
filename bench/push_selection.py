"""Push: how long selecting the members to push takes as push history grows (the query of `start_push`).

uv run python bench/push_selection.py [--backend sqlite|postgres] [--members 100000] [--rounds 5]

Each round selects the members, cuts them into batches, then marks every batch succeeded as of now (no
requests are made); the round before the last changes one member in ten. The database is not analysed, as
in a tenant's first days.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from _common import (
    base_parser,
    hard_limit,
    md_table,
    publish,
    quiet_logs,
    section,
    seed_members,
    seed_tenant,
    temp_database,
)
from pydantic import SecretStr
from sqlalchemy import update

from membersync.assembly import assemble
from membersync.jobs.queue import InMemoryQueue
from membersync.models import Member, PushBatch
from membersync.push.service import start_push
from membersync.runtime import Runtime

UNREACHABLE = "http://127.0.0.1:9/batches"  # no request is made: only the selection is measured


async def _round(runtime: Runtime, tenant_id: int, change_some: bool) -> tuple[int, float, int]:
    started = time.perf_counter()
    async with runtime.unit_of_work() as session:
        run = await start_push(session, runtime.destinations.get("subscribers"), tenant_id, runtime.clock.now())
    seconds = time.perf_counter() - started
    async with runtime.unit_of_work() as session:
        await session.execute(update(PushBatch).values(status="succeeded", members_read_at=runtime.clock.now()))
        if change_some:
            later = runtime.clock.now() + timedelta(seconds=1)
            await session.execute(update(Member).where(Member.id % 10 == 0).values(updated_at=later))
    return run.selected, seconds, len(run.batch_ids)


async def _rounds(settings: Any, tenant_id: int, rounds: int) -> list[tuple[int, float, int]]:
    runtime, _ = assemble(
        settings.model_copy(update={"push_url": UNREACHABLE, "push_api_key": SecretStr("unused")}),
        queue=InMemoryQueue(),
    )
    results = []
    history = 0
    try:
        for index in range(rounds):
            selected, seconds, batches = await _round(runtime, tenant_id, change_some=index == rounds - 2)
            results.append((selected, seconds, history))
            history += batches
    finally:
        await runtime.aclose()
    return results


def render(backend: str, members: int, results: list[tuple[int, float, int]]) -> str:
    rows = [
        [f"{index + 1}", f"{history:,}", f"{selected:,}", f"{seconds:.2f}"]
        for index, (selected, seconds, history) in enumerate(results)
    ]
    body = md_table(["round", "batches before it", "members selected", "seconds (select, batch, enqueue)"], rows)
    body += (
        f"\n\n- Method: {members:,} members; each round runs `start_push` (select, cut into batches of 1,000, "
        "record them and their jobs), then marks every batch succeeded; the round before the last changes one "
        "member in ten. The first round selects everyone; later rounds select none, then the changed tenth. "
        "Tables are not analysed first.\n"
    )
    return section(f"Push selection ({backend})", backend, "no requests: the selection and its writes only", body)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    quiet_logs()
    with hard_limit(900), temp_database(args.backend) as db:
        settings = db.settings(redis=False)
        tenant_id = seed_tenant(db.url)
        seed_members(db.url, tenant_id, args.members)
        results = asyncio.run(_rounds(settings, tenant_id, args.rounds))
    publish(f"push-selection-{args.backend}", render(args.backend, args.members, results), enabled=not args.no_doc)


if __name__ == "__main__":
    main()
