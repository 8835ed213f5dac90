"""push batches: when an accepted batch's members were read, the record of what was pushed; a member's
batches to a destination found newest first

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:00:00.000000

A member counts as pushed to a destination when a succeeded batch to it holds the member and read it at or
after the member's last change; tracker links are no longer written for pushes. Batches accepted before this
revision have no read time, so their members are pushed once more, which a destination that keys members by
email takes as an update.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import membersync.models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "push_batches",
        sa.Column("members_read_at", membersync.models.base.UtcDateTime(timezone=True), nullable=True),
    )
    op.add_column("push_batch_members", sa.Column("destination", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE push_batch_members SET destination = "
        "(SELECT destination FROM push_batches WHERE push_batches.id = push_batch_members.batch_id)"
    )
    with op.batch_alter_table("push_batch_members") as batch:
        batch.alter_column("destination", existing_type=sa.String(length=64), nullable=False)
        batch.drop_index("ix_push_batch_members_member_id")
        batch.create_index(
            "ix_push_batch_members_member_id_destination_batch_id", ["member_id", "destination", "batch_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("push_batch_members") as batch:
        batch.drop_index("ix_push_batch_members_member_id_destination_batch_id")
        batch.create_index("ix_push_batch_members_member_id", ["member_id"], unique=False)
        batch.drop_column("destination")
    # Not in batch mode: on SQLite that copies the table and drops the old one, whose foreign keys would
    # delete every batch's members and requests with it. SQLite (3.35+) drops a plain column in place.
    op.drop_column("push_batches", "members_read_at")
