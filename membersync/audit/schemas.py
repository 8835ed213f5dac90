from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class FieldChange(BaseModel):
    field: str
    before: Any
    after: Any


class AuditEntryOut(BaseModel):
    """What one operation changed in the member."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    changes: list[FieldChange]
    source: str
    operation: str
    operation_id: int | None
    actor: str
    at: datetime

    @field_validator("changes", mode="before")
    @classmethod
    def _listed_by_field(cls, changes: Any) -> Any:
        """Stored as `{field: [before, after]}`; listed by field name."""
        if isinstance(changes, dict):
            return [{"field": field, "before": pair[0], "after": pair[1]} for field, pair in sorted(changes.items())]
        return changes


class HistoryPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None
