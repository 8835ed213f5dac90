"""SQL for what a sync writes: the profile row, member meta, entitlements, sync operations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import insert_or_update
from membersync.models import Entitlement, ExternalProfile, Member, MemberMeta, SyncOperation

MAX_ERROR_LENGTH = 2000


async def upsert_profile(
    session: AsyncSession,
    member: Member,
    provider: str,
    now: datetime,
    *,
    data: dict[str, Any] | None = None,
    external_id: str | None = None,
) -> None:
    """Mark the profile synced at `now`, replacing its data and external id when given."""
    values: dict[str, Any] = {
        "tenant_id": member.tenant_id,
        "member_id": member.id,
        "provider": provider,
        "data": data or {},
        "external_id": external_id,
        "synced_at": now,
        "status": "synced",
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }
    update = ["synced_at", "status", "last_error", "updated_at"]
    update += [column for column, given in (("data", data), ("external_id", external_id)) if given is not None]
    statement = insert_or_update(dialect_of(session), ExternalProfile, ["member_id", "provider"], values, update)
    await session.execute(statement)


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


async def set_meta(session: AsyncSession, member: Member, key: str, value: Any, now: datetime) -> None:
    values = {"tenant_id": member.tenant_id, "member_id": member.id, "key": key, "value": value, "updated_at": now}
    statement = insert_or_update(dialect_of(session), MemberMeta, ["member_id", "key"], values, ["value", "updated_at"])
    await session.execute(statement)


async def grant(
    session: AsyncSession, member: Member, provider: str, resource_id: str, expires_at: datetime | None, now: datetime
) -> None:
    values = {
        "tenant_id": member.tenant_id,
        "member_id": member.id,
        "source_provider": provider,
        "resource_id": resource_id,
        "expires_at": expires_at,
        "created_at": now,
        "updated_at": now,
    }
    conflict = ["member_id", "source_provider", "resource_id"]
    statement = insert_or_update(dialect_of(session), Entitlement, conflict, values, ["expires_at", "updated_at"])
    await session.execute(statement)


async def revoke(session: AsyncSession, member: Member, provider: str, resource_id: str | None) -> None:
    """Delete the provider's entitlement `resource_id`, or all of the provider's when it is None."""
    statement = delete(Entitlement).where(Entitlement.member_id == member.id, Entitlement.source_provider == provider)
    if resource_id is not None:
        statement = statement.where(Entitlement.resource_id == resource_id)
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


async def synced_at_by_provider(session: AsyncSession, member_id: int, providers: list[str]) -> dict[str, datetime]:
    """When each of `providers` last synced this member; providers never synced are absent."""
    statement = select(ExternalProfile.provider, ExternalProfile.synced_at).where(
        ExternalProfile.member_id == member_id, ExternalProfile.provider.in_(providers)
    )
    return {provider: synced_at for provider, synced_at in (await session.execute(statement)).all() if synced_at}
