from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_EMAIL_LENGTH = 320


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased; one '@' with text on both sides, no whitespace or control characters."""
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain or "." not in domain:
        raise ValueError("must be an email address like name@example.org")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in email):
        raise ValueError("must not contain whitespace or control characters")
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be at most {MAX_EMAIL_LENGTH} characters")
    return email


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=MAX_EMAIL_LENGTH + 64)
    name: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=32)
    time_zone: str | None = Field(default=None, max_length=64)
    status: str = Field(default="active", max_length=32, pattern=r"^[a-z_]+$")
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=100)

    @field_validator("email")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_email(value)


class ExternalProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    provider: str
    external_id: str | None
    data: dict[str, Any]
    synced_at: datetime | None
    status: str
    last_error: str | None


class EntitlementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    source_provider: str
    resource_id: str
    expires_at: datetime | None


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str | None
    phone: str | None
    time_zone: str | None
    status: str
    attributes: dict[str, Any]
    last_active_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MemberDetail(MemberOut):
    external_profiles: list[ExternalProfileOut]
    entitlements: list[EntitlementOut]


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None
