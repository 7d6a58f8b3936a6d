"""The documented limits on what one windows query may ask for.

Every edge (CLI, API, scheduler) reaches the windows through the gate, and the gate checks
these before it expands anything, so no input can make a query expand without bound:

- a range of occurrences (``from`` .. ``to``) spans at most ``max_span`` (400 days);
- one query returns at most ``max_occurrences`` (10,000) occurrences;
- a moment asked about (``at``, ``from``, ``to``, ``after``) lies within ``max_distance``
  (10 years) of the real time, when the gate has a clock, and between 1971 and 2199
  always, so dates near the ends of the calendar cannot overflow.

Beyond a limit the caller gets ``InvalidInput`` naming the parameter; the CLI exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controlplane.errors import InvalidInput

EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Limits:
    """How much one query may ask for; the defaults are the documented limits."""

    max_span: timedelta = timedelta(days=400)
    max_occurrences: int = 10_000
    max_distance: timedelta = timedelta(days=3653)  # ten years, leap days included

    def __post_init__(self) -> None:
        if self.max_span <= timedelta(0):
            raise InvalidInput("max_span: must be longer than zero")
        if self.max_occurrences < 1:
            raise InvalidInput("max_occurrences: must be at least 1")
        if self.max_distance <= timedelta(0):
            raise InvalidInput("max_distance: must be longer than zero")


DEFAULT_LIMITS = Limits()


def utc_moment(value: datetime, name: str) -> datetime:
    """``value`` in UTC; it must be aware and between 1971 and 2199."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name}: must be timezone-aware (UTC)")
    value = value.astimezone(UTC)
    if not EARLIEST <= value < LATEST:
        raise InvalidInput(f"{name}: {_text(value)} is outside the years 1971 to 2199")
    return value


def check_distance(value: datetime, now: datetime, name: str, limits: Limits) -> None:
    """``value`` must lie within ``limits.max_distance`` of ``now``, either side."""
    if abs(value - now) > limits.max_distance:
        years = abs(value - now) / timedelta(days=365.2425)
        side = "after" if value > now else "before"
        most = limits.max_distance / timedelta(days=365.2425)
        raise InvalidInput(
            f"{name}: {_text(value)} is {years:.1f} years {side} now; "
            f"at most {most:.0f} years either side"
        )


def check_span(start: datetime, end: datetime, limits: Limits) -> None:
    """A range from ``start`` to ``end`` (parameters ``from`` and ``to``) must fit the limit."""
    span = end - start
    if span > limits.max_span:
        raise InvalidInput(
            f"to: span from 'from' is {_days(span)} days; at most {_days(limits.max_span)} days"
        )


def check_found(found: int, limits: Limits) -> None:
    """Refuse a query once it holds more occurrences than the limit."""
    if found > limits.max_occurrences:
        raise InvalidInput(
            f"to: the range holds more than {limits.max_occurrences} occurrences; "
            "ask for a shorter range or fewer windows"
        )


def check_count(count: int, limits: Limits) -> None:
    if not 1 <= count <= limits.max_occurrences:
        raise InvalidInput(f"count: must be between 1 and {limits.max_occurrences}")


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    # A range between local midnights across a DST change is a whole number of days to people.
    return f"{days:.0f}" if abs(days - round(days)) < 0.05 else f"{days:.1f}"


def _text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
