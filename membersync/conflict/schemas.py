from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Resolution = Literal["keep_current", "accept_incoming", "set_value"]


class ConflictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    member_id: int
    source: str
    field: str
    current_value: Any
    incoming_value: Any
    incoming_changed_at: datetime
    reason: str
    status: str
    resolution: str | None
    resolved_value: Any
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    next_cursor: str | None


class ResolveConflict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
    value: Any = Field(default=None, description="the value to set, with resolution set_value")
