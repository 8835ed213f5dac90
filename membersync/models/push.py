"""Members pushed out to a destination in batches: each batch, its members, and every request it made."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from membersync.models.base import Base, BigId, IdMixin

# A batch waits (queued), is retried (retrying), or is over (succeeded, failed); `membersync jobs
# retry-failed` sends a failed one again.
UNFINISHED_BATCH = ("queued", "sending", "retrying", "failed")


class PushBatch(IdMixin, Base):
    __tablename__ = "push_batches"
    __table_args__ = (Index("ix_push_batches_destination_status", "destination", "status"),)

    tenant_id: Mapped[int] = mapped_column(BigId, ForeignKey("tenants.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    member_count: Mapped[int]
    sent_count: Mapped[int] = mapped_column(default=0)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    scheduled_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    job_id: Mapped[int | None] = mapped_column(BigId)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # When the accepted request's members were read: each is pushed as of then, and a later change is pushed
    # again. Empty until the batch succeeds.
    members_read_at: Mapped[datetime | None]


class PushBatchMember(Base):
    """A member in a batch: while the batch is unfinished, later push runs leave the member to it."""

    __tablename__ = "push_batch_members"
    # A member's batches to a destination, newest first: a push selects members by their latest batch. The
    # destination is copied from the batch so that this index alone answers it, whatever the planner knows.
    __table_args__ = (
        Index("ix_push_batch_members_member_id_destination_batch_id", "member_id", "destination", "batch_id"),
    )

    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("push_batches.id", ondelete="CASCADE"), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigId, ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    destination: Mapped[str] = mapped_column(String(64))


class PushAttempt(IdMixin, Base):
    """One request a batch made: when, how long, what came back."""

    __tablename__ = "push_attempts"

    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("push_batches.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int]
    request_id: Mapped[str] = mapped_column(String(64))
    remote_request_id: Mapped[str | None] = mapped_column(String(255))
    subscribers: Mapped[int]
    status_code: Mapped[int | None]
    duration_ms: Mapped[float]
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(2000))
    started_at: Mapped[datetime]
