"""`membersync demo`: the whole pull-sync loop on the embedded default, against an emulated CRM on loopback."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from membersync.assembly import assemble
from membersync.config import Settings
from membersync.db import migrate
from membersync.db.engine import dialect_of
from membersync.db.upsert import insert_or_ignore
from membersync.errors import TenantNotFound
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.jobs import ledger
from membersync.login.service import LoginResult, login
from membersync.models import Job, JobStatus, Member, Tenant
from membersync.runtime import Runtime
from membersync.sandbox.crm import CrmConfig, CrmServer
from membersync.sandbox.demo_provider import DemoCrmProvider
from membersync.scheduling.service import run_tick, sync_now
from membersync.tenant import service as tenant_service
from membersync.worker import Worker

DEMO_TENANT = "demo"
DORMANT_EMAIL = "dormant.member@example.org"
POLL_SECONDS = 0.2


@dataclass
class DemoSummary:
    dispatched: int
    synced: int
    retried: int
    failed: int
    http_retries: int
    seconds: float
    login: LoginResult

    @property
    def rate(self) -> float:
        return self.synced / self.seconds if self.seconds else 0.0


def demo_settings(settings: Settings) -> Settings:
    """The demo retries failed jobs after 1 s instead of 60 s, so it finishes in under a minute."""
    return settings.model_copy(update={"job_retry_delay_seconds": 1.0, "redis_url": None})


async def _ensure_tenant(runtime: Runtime) -> Tenant:
    async with runtime.unit_of_work() as session:
        try:
            return await tenant_service.get_by_slug(session, DEMO_TENANT)
        except TenantNotFound:
            return await tenant_service.create_tenant(session, DEMO_TENANT, "Demo Arts Club", runtime.clock.now())


async def _seed_members(runtime: Runtime, tenant: Tenant, count: int) -> None:
    now = runtime.clock.now()
    rows = [
        {
            "tenant_id": tenant.id,
            "email": f"member{index:05d}@example.org",
            "name": f"Member {index}",
            "status": "active",
            "attributes": {},
            "last_active_at": now - timedelta(hours=index % 500),
            "created_at": now,
            "updated_at": now,
        }
        for index in range(count)
    ]
    rows.append(rows[0] | {"email": DORMANT_EMAIL, "name": "Dormant Member", "last_active_at": None})
    async with runtime.unit_of_work() as session:
        statement = insert_or_ignore(dialect_of(session), Member, ["tenant_id", "email"])
        await session.execute(statement, rows)


async def _dispatch(runtime: Runtime, tenant: Tenant, console: Console) -> tuple[int, int]:
    async with runtime.database.read_sessions() as session:
        marker = await ledger.max_id(session)
    report = await run_tick(runtime)
    count = report.dispatched.get(f"{DEMO_TENANT}/demo_crm")
    if count is None:
        console.print("The tick found demo_crm not due (it ran recently): dispatching it as `membersync sync` would.")
        count = (await sync_now(runtime, tenant, [runtime.providers.get("demo_crm")], force=True))["demo_crm"]
    else:
        console.print(f"Tick for window {report.window:%H:%M} UTC dispatched {count} member.sync jobs.")
    return marker, count


async def _progress(runtime: Runtime, marker: int) -> dict[str, int]:
    async with runtime.database.read_sessions() as session:
        counts = await ledger.count_since(session, marker, MEMBER_SYNC.name)
        statement = select(func.count()).where(Job.id > marker, Job.name == MEMBER_SYNC.name, Job.attempts > 1)
        counts["retried"] = int(await session.scalar(statement) or 0)
    return counts


async def _wait_for_jobs(runtime: Runtime, marker: int, total: int, console: Console) -> dict[str, int]:
    columns = (TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("jobs", total=total)
        while True:
            counts = await _progress(runtime, marker)
            done = counts.get(JobStatus.SUCCEEDED, 0) + counts.get(JobStatus.FAILED, 0)
            bar.update(task, completed=done)
            if not counts.get(JobStatus.QUEUED, 0) and not counts.get(JobStatus.RUNNING, 0):
                return counts
            await asyncio.sleep(POLL_SECONDS)


async def _login_dormant(runtime: Runtime, tenant: Tenant) -> LoginResult:
    async with runtime.database.read_sessions() as session:
        member_id = await session.scalar(
            select(Member.id).where(Member.tenant_id == tenant.id, Member.email == DORMANT_EMAIL)
        )
    assert member_id is not None
    return await login(runtime, tenant, member_id)


async def _run(settings: Settings, members: int, crm_url: str, worker: Worker, console: Console) -> DemoSummary:
    runtime, _ = assemble(settings)
    try:
        runtime.providers.register(DemoCrmProvider(crm_url))
        tenant = await _ensure_tenant(runtime)
        await _seed_members(runtime, tenant, members)
        started = time.perf_counter()
        marker, dispatched = await _dispatch(runtime, tenant, console)
        counts = await _wait_for_jobs(runtime, marker, dispatched, console)
        seconds = time.perf_counter() - started
        result = await _login_dormant(runtime, tenant)
        return DemoSummary(
            dispatched=dispatched,
            synced=counts.get(JobStatus.SUCCEEDED, 0),
            retried=counts["retried"],
            failed=counts.get(JobStatus.FAILED, 0),
            http_retries=worker.http_retries() + runtime.http.retries,
            seconds=seconds,
            login=result,
        )
    finally:
        await runtime.aclose()


def run_demo(settings: Settings, *, members: int, threads: int, console: Console) -> DemoSummary:
    """Migrate, seed a demo tenant, sync it against the emulated CRM with real workers, log one member in."""
    settings = demo_settings(settings)
    migrate.upgrade(settings.effective_database_url)
    crm = CrmServer(CrmConfig(latency_seconds=0.02, error_rate=0.03, throttle_rate=0.02, seed=7))
    crm_url = crm.start()
    console.print(f"Emulated CRM listening on {crm_url} (20 ms latency, 3 % 5xx, 2 % 429).")
    worker = Worker(
        settings, threads=threads, periodic=False, setup=lambda r: r.providers.register(DemoCrmProvider(crm_url))
    )
    try:
        worker.start()
        return asyncio.run(_run(settings, members, crm_url, worker, console))
    finally:
        worker.stop()
        crm.stop()
