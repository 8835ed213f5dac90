"""push batches

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 23:16:37.796088
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import membersync.models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "push_batches",
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("sent_count", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("scheduled_at", membersync.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("created_at", membersync.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", membersync.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", membersync.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_push_batches_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_batches")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_push_batches_idempotency_key")),
    )
    with op.batch_alter_table("push_batches", schema=None) as batch_op:
        batch_op.create_index("ix_push_batches_destination_status", ["destination", "status"], unique=False)

    op.create_table(
        "push_attempts",
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("remote_request_id", sa.String(length=255), nullable=True),
        sa.Column("subscribers", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("started_at", membersync.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["push_batches.id"], name=op.f("fk_push_attempts_batch_id_push_batches"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_attempts")),
    )
    with op.batch_alter_table("push_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_push_attempts_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "push_batch_members",
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["push_batches.id"],
            name=op.f("fk_push_batch_members_batch_id_push_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_push_batch_members_member_id_members"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("batch_id", "member_id", name=op.f("pk_push_batch_members")),
    )
    with op.batch_alter_table("push_batch_members", schema=None) as batch_op:
        batch_op.create_index("ix_push_batch_members_member_id", ["member_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("push_batch_members", schema=None) as batch_op:
        batch_op.drop_index("ix_push_batch_members_member_id")

    op.drop_table("push_batch_members")
    with op.batch_alter_table("push_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_attempts_batch_id"))

    op.drop_table("push_attempts")
    with op.batch_alter_table("push_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_push_batches_destination_status")

    op.drop_table("push_batches")
