"""Tracker bulk writes: `mark_synced_many` of 100,000 links in batches, first as new links, then as updates.

uv run python bench/tracker_bulk.py [--backend sqlite|postgres] [--links 100000] [--batch 1000]
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _common import base_parser, hard_limit, md_table, publish, quiet_logs, section, seed_tenant, temp_database

from membersync.assembly import assemble
from membersync.runtime import Runtime
from membersync.tracker.entities import EntityRef
from membersync.tracker.service import SyncedLink


async def _write_all(runtime: Runtime, tenant_id: int, links: int, batch: int, round_name: str) -> float:
    """Seconds to mark every link synced, one transaction per batch, as a connector's page loop would."""
    pages = [
        [
            SyncedLink(EntityRef("member", str(index), tenant_id), f"CRM-{index:08d}", {round_name: index})
            for index in range(start, min(start + batch, links))
        ]
        for start in range(0, links, batch)
    ]
    started = time.perf_counter()
    for page in pages:
        async with runtime.unit_of_work() as session:
            await runtime.tracker.mark_synced_many(session, "crm", page, runtime.clock.now())
    return time.perf_counter() - started


async def measure(settings: Any, tenant_id: int, links: int, batch: int) -> dict[str, float]:
    runtime, _ = assemble(settings)
    runtime.tracker.registry.register_source("crm")
    try:
        return {
            "new links": await _write_all(runtime, tenant_id, links, batch, "first"),
            "existing links (metadata merged)": await _write_all(runtime, tenant_id, links, batch, "second"),
        }
    finally:
        await runtime.aclose()


def render(backend: str, links: int, batch: int, seconds: dict[str, float]) -> str:
    rows = [[name, f"{took:.2f}", f"{links / took:,.0f}"] for name, took in seconds.items()]
    slowest = links / max(seconds.values())
    verdict = "met" if slowest > 20_000 else "NOT met"
    body = md_table(["pass", "seconds", "links/s"], rows) + (
        f"\n\n- Aim: over 20,000 links/s on PostgreSQL -> **{verdict}** here (slowest pass {slowest:,.0f} links/s).\n"
        f"- Method: {links:,} member links to source `crm`, {batch:,} per `mark_synced_many` call, one transaction "
        "per call (a connector's page; pages are built before the clock starts); the second pass "
        " rewrites every link with a new metadata key, which the "
        "database merges into the stored metadata."
    )
    return section(f"Tracker bulk mark_synced ({backend})", backend, f"{links:,} links, batches of {batch:,}", body)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    quiet_logs()
    with hard_limit(600), temp_database(args.backend) as db:
        tenant_id = seed_tenant(db.url)
        seconds = asyncio.run(measure(db.settings(), tenant_id, args.links, args.batch))
    publish(
        f"tracker_bulk-{args.backend}",
        render(args.backend, args.links, args.batch, seconds),
        enabled=not args.no_doc,
    )


if __name__ == "__main__":
    main()
