"""SQL of the sync path outside the batched writes: failures, the operation log, freshness reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import insert_or_update
from membersync.models import ExternalProfile, Member, SyncOperation

MAX_ERROR_LENGTH = 2000


async def record_profile_failure(
    session: AsyncSession, member: Member, provider: str, error: str, now: datetime
) -> None:
    """Keep the error on the profile; `synced_at` stays as it was, so the data stays stale."""
    values: dict[str, Any] = {
        "tenant_id": member.tenant_id,
        "member_id": member.id,
        "provider": provider,
        "data": {},
        "status": "failed",
        "last_error": error[:MAX_ERROR_LENGTH],
        "created_at": now,
        "updated_at": now,
    }
    update = ["status", "last_error", "updated_at"]
    statement = insert_or_update(dialect_of(session), ExternalProfile, ["member_id", "provider"], values, update)
    await session.execute(statement)


async def record_operation(
    session: AsyncSession,
    member: Member,
    provider: str,
    *,
    kind: str,
    status: str,
    started_at: datetime,
    finished_at: datetime,
    job_id: int | None = None,
    error: str | None = None,
) -> None:
    session.add(
        SyncOperation(
            tenant_id=member.tenant_id,
            member_id=member.id,
            provider=provider,
            kind=kind,
            status=status,
            job_id=job_id,
            error=error[:MAX_ERROR_LENGTH] if error else None,
            started_at=started_at,
            finished_at=finished_at,
        )
    )


async def synced_at_by_provider(
    connection: AsyncConnection, member_id: int, providers: list[str]
) -> dict[str, datetime]:
    """When each of `providers` last synced this member; providers never synced are absent."""
    statement = select(ExternalProfile.provider, ExternalProfile.synced_at).where(
        ExternalProfile.member_id == member_id, ExternalProfile.provider.in_(providers)
    )
    return {provider: synced_at for provider, synced_at in (await connection.execute(statement)).all() if synced_at}
