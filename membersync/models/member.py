from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from membersync.models.base import Base, BigId, IdMixin, JsonValue

EMPTY_OBJECT = text("'{}'")


def _tenant_fk() -> Mapped[int]:
    return mapped_column(BigId, ForeignKey("tenants.id", ondelete="CASCADE"))


def _member_fk() -> Mapped[int]:
    return mapped_column(BigId, ForeignKey("members.id", ondelete="CASCADE"))


class Member(IdMixin, Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email"),
        Index("ix_members_tenant_id_last_active_at", "tenant_id", "last_active_at"),
        Index("ix_members_tenant_id_name_key", "tenant_id", "name_key"),
        Index("ix_members_tenant_id_phone", "tenant_id", "phone"),
    )

    tenant_id: Mapped[int] = _tenant_fk()
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(255))
    given_name: Mapped[str | None] = mapped_column(String(255))
    family_name: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="active")
    tier: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[dict[str, Any] | None] = mapped_column(JsonValue)
    consent: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Per canonical field: the source of the current value, when that source says it changed, and
    # whether it was edited in membersync itself (what the merge policies decide on).
    field_sources: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    # Blocking keys of the name, for finding possible duplicates without comparing every pair.
    name_key: Mapped[str | None] = mapped_column(String(64))
    last_active_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class MemberMeta(IdMixin, Base):
    __tablename__ = "member_meta"
    __table_args__ = (UniqueConstraint("member_id", "key"),)

    tenant_id: Mapped[int] = _tenant_fk()
    member_id: Mapped[int] = _member_fk()
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[Any] = mapped_column(JsonValue)
    updated_at: Mapped[datetime]


class Entitlement(IdMixin, Base):
    __tablename__ = "entitlements"
    __table_args__ = (UniqueConstraint("member_id", "source_provider", "resource_id"),)

    tenant_id: Mapped[int] = _tenant_fk()
    member_id: Mapped[int] = _member_fk()
    source_provider: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ExternalProfile(IdMixin, Base):
    """A member's record in one provider; `synced_at` is the staleness anchor."""

    __tablename__ = "external_profiles"
    __table_args__ = (UniqueConstraint("member_id", "provider"),)

    tenant_id: Mapped[int] = _tenant_fk()
    member_id: Mapped[int] = _member_fk()
    provider: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    synced_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="synced")
    last_error: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
