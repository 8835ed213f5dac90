from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from membersync.models.base import Base, BigId, IdMixin, JsonValue


class ExternalLink(IdMixin, Base):
    """Which local entity is which record in which source (the tracker)."""

    __tablename__ = "external_links"
    __table_args__ = (
        UniqueConstraint("tenant_id", "entity_type", "entity_id", "source"),
        UniqueConstraint("tenant_id", "source", "entity_type", "external_id"),
        Index("ix_external_links_tenant_id_source_status", "tenant_id", "source", "status"),
    )

    tenant_id: Mapped[int] = mapped_column(BigId, ForeignKey("tenants.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(255))
    synced_at: Mapped[datetime | None]
    remote_updated_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(String(2000))
    retry_count: Mapped[int] = mapped_column(default=0)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonValue, default=dict)
    # A digest of the external record last applied through this link: the same record sent again is skipped.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
