"""A member's history: the audit trail, newest first, by cursor."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.pagination import MAX_ID, decode_cursor
from membersync.member.service import get_member
from membersync.models import AuditEntry


async def history(
    session: AsyncSession, tenant_id: int, member_id: int, *, cursor: str | None, limit: int
) -> tuple[list[AuditEntry], str | None]:
    """Audit entries of one member of the tenant, newest first; 404 for a member of another tenant."""
    await get_member(session, tenant_id, member_id)
    before = decode_cursor(cursor) or MAX_ID
    statement = (
        select(AuditEntry)
        .where(AuditEntry.member_id == member_id, AuditEntry.tenant_id == tenant_id, AuditEntry.id < before)
        .order_by(AuditEntry.id.desc())
        .limit(limit + 1)
    )
    rows = list((await session.scalars(statement)).all())
    items = rows[:limit]
    return items, str(items[-1].id) if len(rows) > limit else None
