"""Members: create or update by email, read with profiles and entitlements, list by cursor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.pagination import decode_cursor
from membersync.db.upsert import insert_or_update
from membersync.errors import InvalidInput, MemberNotFound
from membersync.member.schemas import MemberCreate, normalise_email
from membersync.models import Entitlement, ExternalProfile, Member

MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class MemberWithRecords:
    member: Member
    profiles: list[ExternalProfile]
    entitlements: list[Entitlement]


async def upsert_member(
    session: AsyncSession, tenant_id: int, data: MemberCreate, now: datetime
) -> tuple[Member, bool]:
    """Create the member, or update the one with the same normalised email; True when created."""
    existing = await session.scalar(select(Member.id).where(Member.tenant_id == tenant_id, Member.email == data.email))
    values = data.model_dump() | {"tenant_id": tenant_id, "created_at": now, "updated_at": now}
    changed = ["name", "phone", "time_zone", "status", "attributes", "updated_at"]
    statement = insert_or_update(dialect_of(session), Member, ["tenant_id", "email"], values, changed)
    member_id = await session.scalar(statement.returning(Member.id))
    member = await session.get(Member, member_id, populate_existing=True)
    assert member is not None
    return member, existing is None


async def get_member(session: AsyncSession, tenant_id: int, member_id: int) -> Member:
    member = await session.scalar(select(Member).where(Member.id == member_id, Member.tenant_id == tenant_id))
    if member is None:
        raise MemberNotFound(f"member {member_id} not found")
    return member


async def get_with_records(session: AsyncSession, tenant_id: int, member_id: int) -> MemberWithRecords:
    member = await get_member(session, tenant_id, member_id)
    profiles = await session.scalars(
        select(ExternalProfile).where(ExternalProfile.member_id == member.id).order_by(ExternalProfile.provider)
    )
    entitlements = await session.scalars(
        select(Entitlement)
        .where(Entitlement.member_id == member.id)
        .order_by(Entitlement.source_provider, Entitlement.resource_id)
    )
    return MemberWithRecords(member, list(profiles.all()), list(entitlements.all()))


async def list_members(
    session: AsyncSession, tenant_id: int, *, cursor: str | None, limit: int, email: str | None
) -> tuple[list[Member], str | None]:
    """A page of members in id order, and the cursor of the next page (None at the end)."""
    after = decode_cursor(cursor)
    statement = select(Member).where(Member.tenant_id == tenant_id, Member.id > after)
    if email is not None:
        try:
            statement = statement.where(Member.email == normalise_email(email))
        except ValueError as error:
            raise InvalidInput(f"email: {error}") from None
    members = list((await session.scalars(statement.order_by(Member.id).limit(limit + 1))).all())
    has_more = len(members) > limit
    page = members[:limit]
    return page, str(page[-1].id) if has_more else None


async def touch_last_active(session: AsyncSession, member: Member, now: datetime) -> None:
    """Record a login or token refresh: `members_logged_in_within()` reads this."""
    await session.execute(update(Member).where(Member.id == member.id).values(last_active_at=now))
    member.last_active_at = now
