"""Availability, SLA and error budgets: pure arithmetic on probe counts (no IO, time passed in).

* **Raw availability** = good probes / all probes.
* **SLA availability** leaves out the probes taken while a maintenance window covered the
  instance: they count neither as up nor as down (as Uptime Kuma does).
* **Error budget remaining** = (availability - SLO) / (1 - SLO): 1 is untouched, 0 is spent,
  below 0 is overspent. **Burn rate** = error ratio / (1 - SLO): 1 spends the budget exactly
  over the SLO period. Both are computed from the *raw* availability, because the SLO is
  judged on the raw figure and the SLA on the maintenance-free one: agreed maintenance
  is left out of what the members were promised, not out of what the service did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from controlplane.errors import InvalidInput

HOUR = timedelta(hours=1)


class Period(Enum):
    """The periods availability is reported over."""

    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"

    @property
    def delta(self) -> timedelta:
        return _DELTAS[self]

    @property
    def hours(self) -> int:
        return int(self.delta / HOUR)

    @classmethod
    def parse(cls, text: str) -> Period:
        """``1h``, ``24h`` (or ``1d``), ``7d``, ``30d``; anything else is bad input."""
        value = _ALIASES.get(text.strip().lower(), text.strip().lower())
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise InvalidInput(f"window: {text!r} is not one of {choices}") from None


_DELTAS = {
    Period.HOUR: timedelta(hours=1),
    Period.DAY: timedelta(days=1),
    Period.WEEK: timedelta(days=7),
    Period.MONTH: timedelta(days=30),
}
_ALIASES = {"60m": "1h", "1d": "24h", "168h": "7d", "1w": "7d", "720h": "30d"}


@dataclass(frozen=True)
class Counts:
    """Probe counts for one instance, app or member over some time.

    ``in_window`` probes were taken inside a maintenance window; ``good_in_window`` of them
    answered healthy.
    """

    total: int = 0
    good: int = 0
    in_window: int = 0
    good_in_window: int = 0

    def __post_init__(self) -> None:
        if min(self.total, self.good, self.in_window, self.good_in_window) < 0:
            raise ValueError(f"probe counts cannot be negative: {self}")
        if self.good > self.total or self.in_window > self.total:
            raise ValueError(f"more good or in-window probes than probes: {self}")
        if self.good_in_window > min(self.good, self.in_window):
            raise ValueError(f"good_in_window exceeds good or in_window: {self}")

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.total + other.total,
            self.good + other.good,
            self.in_window + other.in_window,
            self.good_in_window + other.good_in_window,
        )

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def sla_total(self) -> int:
        """Probes that count for the SLA: those outside every maintenance window."""
        return self.total - self.in_window

    @property
    def sla_good(self) -> int:
        return self.good - self.good_in_window

    @property
    def sla_bad(self) -> int:
        return self.sla_total - self.sla_good

    @property
    def availability(self) -> float | None:
        """Raw availability; None without probes."""
        return self.good / self.total if self.total else None

    @property
    def sla_availability(self) -> float | None:
        """Availability without the probes taken in maintenance windows; None without any."""
        return self.sla_good / self.sla_total if self.sla_total else None


def check_slo(slo: float) -> float:
    if not 0 < slo < 1:
        raise ValueError(f"an SLO must lie strictly between 0 and 1, got {slo}")
    return slo


def error_budget_remaining(availability: float, slo: float) -> float:
    """(availability - SLO) / (1 - SLO): 1 untouched, 0 spent, negative overspent."""
    check_slo(slo)
    return (availability - slo) / (1 - slo)


def burn_rate(availability: float, slo: float) -> float:
    """Error ratio / (1 - SLO): how fast the error budget is being spent."""
    check_slo(slo)
    return (1 - availability) / (1 - slo)


@dataclass(frozen=True)
class Availability:
    """One member's app over one period: counts, and every figure derived from them."""

    member: str
    app: str
    period: Period
    slo: float
    counts: Counts

    def __post_init__(self) -> None:
        check_slo(self.slo)

    @property
    def raw(self) -> float | None:
        return self.counts.availability

    @property
    def sla(self) -> float | None:
        return self.counts.sla_availability

    @property
    def budget_remaining(self) -> float | None:
        return None if self.raw is None else error_budget_remaining(self.raw, self.slo)

    @property
    def burn_rate(self) -> float | None:
        return None if self.raw is None else burn_rate(self.raw, self.slo)

    def to_json(self) -> dict[str, object]:
        return {
            "member": self.member,
            "app": self.app,
            "window": self.period.value,
            "slo": self.slo,
            "probes": self.counts.total,
            "good": self.counts.good,
            "in_window": self.counts.in_window,
            "good_in_window": self.counts.good_in_window,
            "availability": self.raw,
            "sla_availability": self.sla,
            "error_budget_remaining": self.budget_remaining,
            "burn_rate": self.burn_rate,
        }


def floor_hour(at: datetime) -> datetime:
    """The start of ``at``'s clock hour, in UTC."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def first_hour(period: Period, now: datetime) -> datetime:
    """The first hourly bucket of a period ending at ``now``.

    Periods of a day and longer are counted in whole clock hours: the current (partial)
    hour and the ``hours - 1`` before it.
    """
    return floor_hour(now) - (period.hours - 1) * HOUR
