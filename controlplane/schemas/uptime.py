"""Availability per member, app and period, as the edges show it."""

from __future__ import annotations

from pydantic import BaseModel

from controlplane.uptime.availability import Availability


class AvailabilityOut(BaseModel):
    """Raw availability, and the SLA figure that leaves out maintenance windows."""

    member: str
    app: str
    window: str
    slo: float
    probes: int
    good: int
    in_window: int
    good_in_window: int
    availability: float | None
    sla_availability: float | None
    error_budget_remaining: float | None
    burn_rate: float | None

    @classmethod
    def of(cls, a: Availability) -> AvailabilityOut:
        return cls.model_validate(a.to_json())
