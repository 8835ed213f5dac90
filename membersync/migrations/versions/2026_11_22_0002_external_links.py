"""external links

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 20:01:28.104021
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import membersync.models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "external_links",
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("synced_at", membersync.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("remote_updated_at", membersync.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column(
            "metadata", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("created_at", membersync.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", membersync.models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", membersync.models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_external_links_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_links")),
        sa.UniqueConstraint(
            "tenant_id",
            "entity_type",
            "entity_id",
            "source",
            name=op.f("uq_external_links_tenant_id_entity_type_entity_id_source"),
        ),
        sa.UniqueConstraint(
            "tenant_id",
            "source",
            "entity_type",
            "external_id",
            name=op.f("uq_external_links_tenant_id_source_entity_type_external_id"),
        ),
    )
    with op.batch_alter_table("external_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_external_links_tenant_id_source_status", ["tenant_id", "source", "status"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("external_links", schema=None) as batch_op:
        batch_op.drop_index("ix_external_links_tenant_id_source_status")

    op.drop_table("external_links")
