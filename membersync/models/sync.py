from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from membersync.models.base import Base, BigId, IdMixin, JsonValue


class SyncRun(IdMixin, Base):
    """The dispatch record of one provider in one tenant: the tick's due-check reads it."""

    __tablename__ = "sync_runs"
    __table_args__ = (UniqueConstraint("tenant_id", "provider"),)

    tenant_id: Mapped[int] = mapped_column(BigId, ForeignKey("tenants.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    last_dispatched_at: Mapped[datetime | None]
    last_dispatch_count: Mapped[int] = mapped_column(default=0)
    last_trigger: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SyncOperation(IdMixin, Base):
    """One attempt to sync one member with one provider, whatever triggered it."""

    __tablename__ = "sync_operations"
    __table_args__ = (Index("ix_sync_operations_tenant_id_started_at", "tenant_id", "started_at"),)

    tenant_id: Mapped[int] = mapped_column(BigId, ForeignKey("tenants.id", ondelete="CASCADE"))
    member_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("members.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[int | None] = mapped_column(BigId)
    error: Mapped[str | None] = mapped_column(String(2000))
    # Counts, rejected fields and matching decisions of an identity apply, for whoever asks why.
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonValue)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
