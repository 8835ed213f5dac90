"""Tracker lookups: `find_by_external_id` p50/p99 with 1,000,000 links, beside a raw indexed SELECT.

uv run python bench/tracker_lookup.py [--backend sqlite|postgres] [--links 1000000] [--calls 5000]
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

from _common import (
    base_parser,
    hard_limit,
    md_table,
    percentile,
    publish,
    quiet_logs,
    section,
    seed_tenant,
    temp_database,
)
from sqlalchemy import insert, select

from membersync.assembly import assemble
from membersync.db.engine import open_sync_engine
from membersync.models import ExternalLink
from membersync.runtime import Runtime

CHUNK = 20_000


def seed_links(url: str, tenant_id: int, count: int) -> float:
    """Insert `count` member links to source "crm" with one multi-row INSERT per chunk; returns seconds."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    engine = open_sync_engine(url)
    try:
        for start in range(0, count, CHUNK):
            rows: list[dict[str, Any]] = [
                {
                    "tenant_id": tenant_id,
                    "entity_type": "member",
                    "entity_id": str(index),
                    "source": "crm",
                    "external_id": f"CRM-{index:08d}",
                    "synced_at": now,
                    "status": "synced",
                    "retry_count": 0,
                    "meta": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for index in range(start, min(start + CHUNK, count))
            ]
            with engine.begin() as connection:
                connection.execute(insert(ExternalLink), rows)
            print(f"  seeded {min(start + CHUNK, count):,} links", end="\r", flush=True)
    finally:
        engine.dispose()
    print()
    return time.perf_counter() - started


async def _time_calls(runtime: Runtime, tenant_id: int, links: int, calls: int) -> tuple[list[float], list[float]]:
    tracker, lookup, raw = runtime.tracker, [], []
    statement = select(ExternalLink.entity_id)
    for call in range(calls + calls // 10):
        external_id = f"CRM-{random.randrange(links):08d}"
        started = time.perf_counter()
        async with runtime.database.read_sessions() as session:
            found = await tracker.find_by_external_id(session, tenant_id, external_id, "crm", "member")
        middle = time.perf_counter()
        async with runtime.database.read_sessions() as session:
            await session.scalar(
                statement.where(
                    ExternalLink.tenant_id == tenant_id,
                    ExternalLink.source == "crm",
                    ExternalLink.entity_type == "member",
                    ExternalLink.external_id == external_id,
                )
            )
        ended = time.perf_counter()
        assert found is not None
        if call >= calls // 10:
            lookup.append((middle - started) * 1000)
            raw.append((ended - middle) * 1000)
    return lookup, raw


async def measure(url: str, settings: Any, tenant_id: int, links: int, calls: int) -> tuple[list[float], list[float]]:
    runtime, _ = assemble(settings)
    runtime.tracker.registry.register_source("crm")
    try:
        return await _time_calls(runtime, tenant_id, links, calls)
    finally:
        await runtime.aclose()


def render(backend: str, links: int, calls: int, seed_seconds: float, lookup: list[float], raw: list[float]) -> str:
    rows = [
        [name, f"{percentile(values, 50):.3f}", f"{percentile(values, 90):.3f}", f"{percentile(values, 99):.3f}"]
        for name, values in (("`find_by_external_id`", lookup), ("raw indexed SELECT, same read session kind", raw))
    ]
    p99 = percentile(lookup, 99)
    verdict = "met" if p99 < 1.0 else "NOT met"
    body = md_table(["call (ms)", "p50", "p90", "p99"], rows) + (
        f"\n\n- Aim: p99 under 1 ms -> **{verdict}** (p99 {p99:.3f} ms; the raw SELECT's own p99 is "
        f"{percentile(raw, 99):.3f} ms: the floor is the async driver's round trip).\n"
        f"- Seeding {links:,} links took {seed_seconds:.1f} s (not part of the figures).\n"
        "- Method: one asyncio loop; each call opens a read session, as a caller would; random external ids, all "
        "present; the first 10 % of calls are warm-up. The lookup uses the unique index "
        "(tenant_id, source, entity_type, external_id)."
    )
    load = f"{links:,} links in one source, {calls:,} timed lookups"
    return section(f"Tracker lookup, 1M links ({backend})", backend, load, body)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=5_000)
    args = parser.parse_args()
    quiet_logs()
    with hard_limit(900), temp_database(args.backend) as db:
        tenant_id = seed_tenant(db.url)
        seed_seconds = seed_links(db.url, tenant_id, args.links)
        lookup, raw = asyncio.run(measure(db.url, db.settings(), tenant_id, args.links, args.calls))
    publish(
        f"tracker_lookup-{args.backend}",
        render(args.backend, args.links, args.calls, seed_seconds, lookup, raw),
        enabled=not args.no_doc,
    )


if __name__ == "__main__":
    main()
