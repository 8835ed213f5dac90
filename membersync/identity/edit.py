"""A manual edit of a member (the API's create-or-update by email) through the same path as every source."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.errors import InvalidInput
from membersync.identity.normalize import normalize_record
from membersync.identity.policy import LOCAL_SOURCE
from membersync.identity.schemas import ATTRIBUTE_PREFIX, MappedRecord
from membersync.identity.service import apply_records, tenant_options
from membersync.member.schemas import MemberCreate
from membersync.member.service import get_member
from membersync.models import Member
from membersync.tracker.service import Tracker


def edit_record(data: MemberCreate, now: datetime) -> MappedRecord:
    values = {
        "email": data.email,
        "full_name": data.name,
        "phone": data.phone,
        "time_zone": data.time_zone,
        "membership_status": data.status,
    }
    values |= {ATTRIBUTE_PREFIX + key: value for key, value in data.attributes.items()}
    return MappedRecord(values={key: value for key, value in values.items() if value is not None}, changed_at=now)


async def apply_edit(
    session: AsyncSession, tracker: Tracker, tenant_id: int, data: MemberCreate, now: datetime, *, actor: str
) -> tuple[Member, bool]:
    """Create the member with this email, or change the given fields of the one that has it (audited as an
    edit made in membersync); True when created. A value that does not normalise is refused, nothing written."""
    options = dataclasses.replace(await tenant_options(session, tenant_id), email_only=True)
    record = edit_record(data, now)
    rejected = normalize_record(record, LOCAL_SOURCE, now, options.normalise).rejected
    if rejected:
        raise InvalidInput(f"{rejected[0].field.removeprefix(ATTRIBUTE_PREFIX)}: {rejected[0].reason}")
    result = await apply_records(
        session, tracker, tenant_id, LOCAL_SOURCE, [record], now, options=options, actor=actor, operation="edit"
    )
    member_id = result.member_ids[0]
    assert member_id is not None
    return await get_member(session, tenant_id, member_id), result.created == 1
