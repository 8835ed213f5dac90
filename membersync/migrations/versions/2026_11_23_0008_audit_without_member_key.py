"""audit entries: no foreign key on member_id either; the trail is written and moved by code that knows the member

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 18:00:00.000000

On PostgreSQL each key is checked by a trigger per row. An import of 1,000 new members writes about 9,000 audit
entries, and the member check took about 80 ms of the 140 ms they cost. Every entry is written for a member the
same transaction has just read or created, and the one path that deletes a member (merging two) first moves that
member's entries to the survivor, so the key guarded nothing that happens. Nothing deletes a tenant.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On SQLite batch mode copies the table; nothing refers to audit entries, so nothing cascades.
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_constraint("fk_audit_entries_member_id_members", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.create_foreign_key(
            "fk_audit_entries_member_id_members", "members", ["member_id"], ["id"], ondelete="CASCADE"
        )
