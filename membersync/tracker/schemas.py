from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class SyncStatus(BaseModel):
    entity_type: str
    entity_id: str
    source: str
    status: Literal["synced", "pending", "failed", "not_synced"]
    external_id: str | None = None
    last_synced_at: datetime | None = None
    last_updated_at: datetime | None = None
    remote_updated_at: datetime | None = None
    deleted_at: datetime | None = None
    retry_count: int = 0
    last_error: str | None = None
    metadata: dict[str, Any] = {}


class LinkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    entity_type: str
    entity_id: str
    source: str
    external_id: str | None
    status: str
    synced_at: datetime | None
    remote_updated_at: datetime | None
    retry_count: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class LinkPage(BaseModel):
    items: list[LinkOut]
    next_cursor: str | None
