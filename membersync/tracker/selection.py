"""The tracker's SQL for links named by a query (`SelectedLinks`): written without the rows leaving the
database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, Subquery, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import upsert_from_select
from membersync.models import ExternalLink
from membersync.tracker.entities import SelectedLinks
from membersync.tracker.repository import LINK_KEY

CLEARED = {"last_error": None, "deleted_at": None, "fingerprint": None, "remote_updated_at": None}


def _of_selection(selected: SelectedLinks) -> list[Any]:
    return [
        ExternalLink.tenant_id == selected.tenant_id,
        ExternalLink.source == selected.source,
        ExternalLink.entity_type == selected.entity_type,
    ]


async def release_external_ids(session: AsyncSession, selected: SelectedLinks, now: datetime) -> None:
    """Free the external ids of the selection held by other entities: those links are left pending with no
    external id and no sync time."""
    pairs = selected.pairs()
    same_pair = (
        select(pairs.c[0]).where(pairs.c[0] == ExternalLink.entity_id, pairs.c[1] == ExternalLink.external_id).exists()
    )
    await session.execute(
        update(ExternalLink)
        .where(*_of_selection(selected), ExternalLink.external_id.in_(select(pairs.c[1])), ~same_pair)
        .values(external_id=None, status="pending", synced_at=None, fingerprint=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def _inserted(selected: SelectedLinks, pairs: Subquery, now: datetime) -> tuple[list[str], Select[Any]]:
    """The columns of a new link for each entity of the selection (`pairs`), and the SELECT that yields them."""
    constants = {
        "tenant_id": selected.tenant_id,
        "entity_type": selected.entity_type,
        "source": selected.source,
        "synced_at": now,
        "status": "synced",
        "retry_count": 0,
        "metadata": {},
        "created_at": now,
        "updated_at": now,
    }
    columns = ["entity_id", "external_id", *constants]
    values = [pairs.c[0], pairs.c[1]] + [
        bindparam(f"selected_{name}", value, type_=ExternalLink.__table__.c[name].type)
        for name, value in constants.items()
    ]
    return columns, select(*values).select_from(pairs)


async def upsert_selected(session: AsyncSession, selected: SelectedLinks, now: datetime) -> None:
    """Every entity of the selection synced as of `now`, in one statement; a link's metadata is kept."""
    columns, rows = _inserted(selected, selected.pairs(), now)
    refreshed = ["external_id", "synced_at", "status", "retry_count", "updated_at"]
    statement = upsert_from_select(dialect_of(session), ExternalLink, LINK_KEY, columns, rows, refreshed, CLEARED)
    await session.execute(statement)


async def selected_links(session: AsyncSession, selected: SelectedLinks) -> list[ExternalLink]:
    """The links of the entities the selection yields."""
    pairs = selected.pairs()
    statement = select(ExternalLink).where(*_of_selection(selected), ExternalLink.entity_id.in_(select(pairs.c[0])))
    return list((await session.scalars(statement.order_by(ExternalLink.id))).all())
