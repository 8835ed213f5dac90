"""The review queue: list conflicts, and resolve one by keeping, accepting or setting a value."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.conflict import repository
from membersync.conflict.schemas import Resolution
from membersync.db.pagination import decode_cursor
from membersync.errors import Conflict as ConflictError
from membersync.errors import InvalidInput, NotFound
from membersync.identity import repository as identity_repository
from membersync.identity.normalize import NormaliseOptions, normalize_record
from membersync.identity.policy import LOCAL_SOURCE
from membersync.identity.schemas import MappedRecord
from membersync.identity.state import state_of
from membersync.identity.writes import audit_changes, updated_row
from membersync.models import Conflict, Member

STATUSES = ("pending", "resolved", "superseded")


async def list_conflicts(
    session: AsyncSession,
    tenant_id: int,
    *,
    cursor: str | None,
    limit: int,
    status: str | None = "pending",
    member_id: int | None = None,
    field: str | None = None,
    source: str | None = None,
) -> tuple[list[Conflict], str | None]:
    """A page of the tenant's conflicts in id order and the next page's cursor (None at the end)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: must be one of {', '.join(STATUSES)}")
    rows = await repository.page(
        session,
        tenant_id,
        after=decode_cursor(cursor),
        limit=limit,
        status=status,
        member_id=member_id,
        field=field,
        source=source,
    )
    items = rows[:limit]
    return items, str(items[-1].id) if len(rows) > limit else None


async def resolve(
    session: AsyncSession,
    tenant_id: int,
    conflict_id: int,
    resolution: Resolution,
    now: datetime,
    *,
    actor: str,
    value: Any = None,
    options: NormaliseOptions | None = None,
) -> Conflict:
    """Settle a pending conflict; accepting or setting a value changes the member and is audited."""
    conflict = await repository.for_update(session, tenant_id, conflict_id)
    if conflict is None:
        raise NotFound(f"conflict {conflict_id} not found")
    if conflict.status != "pending":
        raise ConflictError(f"conflict {conflict_id} is already {conflict.status}")
    if resolution == "accept_incoming":
        chosen = await _write_value(session, conflict, conflict.incoming_value, conflict.source, now, actor)
    elif resolution == "set_value":
        checked = _normalised(conflict.field, value, conflict.source, now, options or NormaliseOptions())
        chosen = await _write_value(session, conflict, checked, LOCAL_SOURCE, now, actor)
    else:
        chosen = conflict.current_value
        await _remember_declined(session, conflict, now)
    conflict.status, conflict.resolution, conflict.resolved_value = "resolved", resolution, chosen
    conflict.resolved_by, conflict.resolved_at, conflict.updated_at = actor, now, now
    await session.flush()
    return conflict


def _normalised(field: str, value: Any, source: str, now: datetime, options: NormaliseOptions) -> Any:
    if value is None:
        raise InvalidInput("value: required with resolution set_value")
    record = normalize_record(MappedRecord(values={field: value}), source, now, options)
    if record.rejected:
        raise InvalidInput(f"value: {record.rejected[0].reason}")
    return record.values[field].value


async def _write_value(
    session: AsyncSession, conflict: Conflict, value: Any, source: str, now: datetime, actor: str
) -> Any:
    member = await _member(session, conflict)
    if conflict.field == "email" and value != member.email:
        holder = await repository.email_holder(session, member.tenant_id, value)
        if holder is not None:
            raise ConflictError(f"value: email {value} belongs to member {holder}")
    state = state_of(member)
    before = state.values.get(conflict.field)
    changed_at = now if source == LOCAL_SOURCE else conflict.incoming_changed_at
    state.set(conflict.field, value, source, changed_at)
    await identity_repository.update_members(session, [updated_row(state, now)])
    if before != value:
        await identity_repository.insert_audit(session, [_audit(conflict, before, value, source, now, actor)])
    return value


async def _remember_declined(session: AsyncSession, conflict: Conflict, now: datetime) -> None:
    """Keep what was declined, so the same value from the same source does not ask again."""
    state = state_of(await _member(session, conflict))
    state.decline(conflict.field, conflict.source, conflict.incoming_value)
    await identity_repository.update_members(session, [updated_row(state, now)])


async def _member(session: AsyncSession, conflict: Conflict) -> Member:
    member = await repository.member_for_update(session, conflict.member_id)
    if member is None:
        raise NotFound(f"member {conflict.member_id} not found")
    return member


def _audit(conflict: Conflict, before: Any, after: Any, source: str, now: datetime, actor: str) -> dict[str, Any]:
    return {
        "tenant_id": conflict.tenant_id,
        "member_id": conflict.member_id,
        "changes": audit_changes([(conflict.field, before, after)]),
        "source": source,
        "operation": "resolve",
        "operation_id": conflict.id,
        "actor": actor,
        "at": now,
    }
