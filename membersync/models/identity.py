"""Conflicts waiting for review, the append-only audit trail, and possible duplicate members."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from membersync.models.base import Base, BigId, IdMixin, JsonValue


def _tenant_fk() -> Mapped[int]:
    return mapped_column(BigId, ForeignKey("tenants.id", ondelete="CASCADE"))


def _member_fk() -> Mapped[int]:
    return mapped_column(BigId, ForeignKey("members.id", ondelete="CASCADE"))


PENDING_ONLY = text("status = 'pending'")


class Conflict(IdMixin, Base):
    """A field a merge policy could not decide: the member's value against a source's, until resolved."""

    __tablename__ = "conflicts"
    __table_args__ = (
        # One open question per member and field: a newer incoming value replaces the pending one.
        Index(
            "uq_conflicts_pending_member_field",
            "member_id",
            "field",
            unique=True,
            sqlite_where=PENDING_ONLY,
            postgresql_where=PENDING_ONLY,
        ),
        Index("ix_conflicts_tenant_id_status", "tenant_id", "status"),
    )

    tenant_id: Mapped[int] = _tenant_fk()
    member_id: Mapped[int] = _member_fk()
    source: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(255))
    current_value: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    incoming_value: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    incoming_changed_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    resolution: Mapped[str | None] = mapped_column(String(32))
    resolved_value: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AuditEntry(IdMixin, Base):
    """What one operation changed in one member: each field's before and after, by what and whom.

    Never updated or deleted. One row per member, operation and source, the fields in `changes`
    (`{field: [before, after]}`), rather than a row per field: a page of 1,000 new members writes 1,000 rows, not
    9,000 (migration 0009).
    """

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_member_id_id", "member_id", "id"),)

    # No foreign keys: on PostgreSQL each is a check per row. Entries are written for members the same transaction
    # read or created, and merging two members moves the loser's entries before deleting it (migrations 0007 and
    # 0008).
    tenant_id: Mapped[int] = mapped_column(BigId)
    member_id: Mapped[int] = mapped_column(BigId)
    changes: Mapped[dict[str, list[Any]]] = mapped_column(JsonValue)
    source: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(32))
    operation_id: Mapped[int | None] = mapped_column(BigId)
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]


class DuplicatePair(IdMixin, Base):
    """Two members of one tenant that may be one person, waiting for review (merge or dismiss)."""

    __tablename__ = "duplicate_pairs"
    __table_args__ = (
        UniqueConstraint("first_member_id", "second_member_id"),
        Index("ix_duplicate_pairs_tenant_id_status", "tenant_id", "status"),
    )

    tenant_id: Mapped[int] = _tenant_fk()
    # NULL once that member was merged away: the pair stays as the record of the merge.
    first_member_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("members.id", ondelete="SET NULL"))
    second_member_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("members.id", ondelete="SET NULL"))
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
