from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    field: str
    before: Any
    after: Any
    source: str
    operation: str
    operation_id: int | None
    actor: str
    at: datetime


class HistoryPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None
