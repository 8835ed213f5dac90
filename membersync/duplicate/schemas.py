from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class DuplicatePairOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    first_member_id: int | None
    second_member_id: int | None
    score: float
    reasons: list[str]
    status: str
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime


class DuplicatePage(BaseModel):
    items: list[DuplicatePairOut]
    next_cursor: str | None


class MergePair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    survivor_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="defaults to the older member")


class MergeOut(BaseModel):
    survivor_id: int
    merged_id: int
    fields_filled: list[str]
