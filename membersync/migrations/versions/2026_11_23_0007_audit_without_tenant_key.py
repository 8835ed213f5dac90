"""audit entries: no foreign key on tenant_id; the member's own key, which cascades, covers the tenant

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 12:00:00.000000

Every audit entry names a member, and a member is deleted with its tenant, so the tenant's key checked nothing
the member's did not. On PostgreSQL each key is checked by a trigger per row: an import of 1,000 new members
writes about 9,000 audit entries, and the tenant check alone took about 85 ms of it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On SQLite batch mode copies the table; nothing refers to audit entries, so nothing cascades.
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_constraint("fk_audit_entries_tenant_id_tenants", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.create_foreign_key(
            "fk_audit_entries_tenant_id_tenants", "tenants", ["tenant_id"], ["id"], ondelete="CASCADE"
        )
