"""The `member.sync` job: sync one member with one provider, on the audience-sync queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select, tuple_

from membersync.freshness.service import SyncRequest, run_provider, sync_member
from membersync.jobs.ledger import ClaimedJob
from membersync.jobs.queue import AUDIENCE_SYNC_QUEUE
from membersync.jobs.runner import PermanentJobError
from membersync.jobs.spec import Finalizer, JobSpec, RetryStrategy
from membersync.locks import sync_lock_key
from membersync.models import ExternalProfile, Member, Tenant
from membersync.runtime import Runtime


def _lock_key(job: ClaimedJob) -> str:
    return sync_lock_key(job.tenant_id or 0, job.entity_id or 0, job.target or "")


MEMBER_SYNC = JobSpec(
    name="member.sync",
    queue=AUDIENCE_SYNC_QUEUE,
    retry=RetryStrategy(max_attempts=3, delay=timedelta(seconds=60)),
    unique_for=timedelta(seconds=600),
    lock=_lock_key,
)


@dataclass(frozen=True)
class MemberState:
    member: Member
    tenant: Tenant
    synced_at: datetime | None


async def preload_members(runtime: Runtime, jobs: Sequence[ClaimedJob]) -> dict[int, MemberState]:
    """Members, tenants and profile `synced_at` of a whole batch, in two queries."""
    member_ids = {job.entity_id for job in jobs}
    pairs = [(job.entity_id, job.target) for job in jobs]
    async with runtime.database.read_sessions() as session:
        rows = await session.execute(
            select(Member, Tenant).join(Tenant, Tenant.id == Member.tenant_id).where(Member.id.in_(member_ids))
        )
        found = {member.id: (member, tenant) for member, tenant in rows}
        synced = await session.execute(
            select(ExternalProfile.member_id, ExternalProfile.provider, ExternalProfile.synced_at).where(
                tuple_(ExternalProfile.member_id, ExternalProfile.provider).in_(pairs)
            )
        )
        synced_at = {(member_id, provider): at for member_id, provider, at in synced}
    states: dict[int, MemberState] = {}
    for job in jobs:
        member, tenant = found.get(job.entity_id or 0, (None, None))
        if member is not None and tenant is not None and member.tenant_id == job.tenant_id:
            states[job.id] = MemberState(member, tenant, synced_at.get((member.id, job.target or "")))
    return states


async def _load_state(runtime: Runtime, job: ClaimedJob) -> MemberState | None:
    if job.preloaded is not None:
        state: MemberState = job.preloaded
        return state
    return (await preload_members(runtime, [job])).get(job.id)


async def handle_member_sync(runtime: Runtime, job: ClaimedJob) -> Finalizer | None:
    """Sync `job.entity_id` with provider `job.target`.

    Idempotent: skipped when the profile was synced since the job was queued (unless `force`), and run
    under the same member+provider lock as the login path. 3 tries, 60 s apart; de-duplicated for 600 s.
    """
    if job.target is None or job.target not in runtime.providers:
        raise PermanentJobError(f"unknown sync provider {job.target!r}")
    state = await _load_state(runtime, job)
    if state is None:
        raise PermanentJobError(f"member {job.entity_id} of tenant {job.tenant_id} no longer exists")
    member, tenant, synced_at = state.member, state.tenant, state.synced_at
    provider = runtime.providers.get(job.target)
    if not provider.is_available_for_tenant(tenant):
        return None
    force = bool(job.params.get("force", False))
    request = SyncRequest(
        tenant=tenant,
        member=member,
        provider=provider,
        kind=str(job.params.get("kind", "scheduled")),
        synced_since=job.created_at,
        force=force,
        job_id=job.id,
        lock_wait=runtime.settings.login_lock_wait_seconds,
    )
    if not job.lock_held:
        await sync_member(runtime, request)
        return None
    # The batch took the lock before this read, so the synced_at read above is current.
    if not force and synced_at is not None and synced_at >= job.created_at:
        return None
    return await run_provider(runtime, request)


def install(runtime: Runtime) -> None:
    runtime.jobs.add(MEMBER_SYNC, partial(handle_member_sync, runtime), partial(preload_members, runtime))
