"""Windows, freezes and gate decisions as the edges show them.

Times are UTC text ending in ``Z`` and local ISO times with their offset, as the windows
core renders them; the models validate that core output, so the shape lives in one place.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controlplane.windows.conflicts import Conflict
from controlplane.windows.decision import Decision
from controlplane.windows.rules import Occurrence

# ``from`` and ``with`` are Python keywords: the fields carry them as aliases.
_ALIASED = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)


class OccurrenceOut(BaseModel):
    window: str
    kind: str
    scope: dict[str, str] | str
    timezone: str
    start_local: str
    end_local: str
    start_utc: str
    end_utc: str
    cutoff_utc: str | None

    @classmethod
    def of(cls, o: Occurrence) -> OccurrenceOut:
        return cls.model_validate(o.to_json())


class OccurrencesOut(BaseModel):
    model_config = _ALIASED

    start: str = Field(alias="from")
    end: str = Field(alias="to")
    member: str | None
    occurrences: list[OccurrenceOut]


class DecisionOut(BaseModel):
    """The gate's answer; ``status`` is allowed or refused."""

    status: str
    allowed: bool
    reason: str
    message: str
    at: str
    member: str | None
    app: str | None
    host: str | None
    hosts: list[str]
    policy: str
    freezes: list[OccurrenceOut]
    windows: list[OccurrenceOut]
    next_allowed: str | None
    closes_at: str | None
    emergency_reason: str | None
    overridden: str | None

    @classmethod
    def of(cls, d: Decision) -> DecisionOut:
        return cls.model_validate(d.to_json())


class ConflictOut(BaseModel):
    model_config = _ALIASED

    kind: str
    window: str
    timezone: str
    start_utc: str
    end_utc: str
    start_local: str
    end_local: str
    inside: bool
    others: list[OccurrenceOut] = Field(alias="with")
    hosts: list[str]
    shared: list[str]
    message: str

    @classmethod
    def of(cls, c: Conflict) -> ConflictOut:
        return cls.model_validate({**c.to_json(), "timezone": c.window.window.timezone})


class ConflictsOut(BaseModel):
    model_config = _ALIASED

    start: str = Field(alias="from")
    end: str = Field(alias="to")
    conflicts: list[ConflictOut]
