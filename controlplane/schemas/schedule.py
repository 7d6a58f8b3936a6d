"""The stored schedule: maintenance jobs and queued deploys, with their next start."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ScheduledJobOut(BaseModel):
    id: str
    name: str
    next_run: datetime | None


class ScheduleSyncOut(BaseModel):
    status: str = "ok"
    jobs: int
