from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_EMAIL_LENGTH = 320
MAX_ATTRIBUTES_DEPTH = 8
MAX_ATTRIBUTES_BYTES = 64 * 1024
ALLOWED_CONTROL = {"\t", "\n", "\r"}


def _has_control(text: str, allowed: set[str]) -> bool:
    return any((ord(char) < 32 or ord(char) == 127) and char not in allowed for char in text)


def check_text(value: str | None) -> str | None:
    """Single-line text: no control characters (PostgreSQL cannot even store NUL)."""
    if value is not None and _has_control(value, set()):
        raise ValueError("must not contain control characters")
    return value


def _check_json(value: Any, depth: int) -> None:
    if depth > MAX_ATTRIBUTES_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_ATTRIBUTES_DEPTH} levels")
    if isinstance(value, str) and _has_control(value, ALLOWED_CONTROL):
        raise ValueError("strings must not contain control characters other than tab and newline")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value, 1)
    if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"must be at most {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    return value


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

    @field_validator("name", "phone", "time_zone")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return check_text(value)

    @field_validator("attributes")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_attributes(value)


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
