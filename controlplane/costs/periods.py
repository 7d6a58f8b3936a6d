"""Periods: calendar months in the fleet's time zone, and the month or quarter a report covers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from controlplane.errors import InvalidInput

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_RE = re.compile(r"^([0-9]{4})-([0-9]{2})$")
_QUARTER_RE = re.compile(r"^([0-9]{4})-Q([1-4])$")


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month in the fleet's time zone: the unit every cost is booked in."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not (1 <= self.month <= 12 and 1970 <= self.year <= 9000):
            raise InvalidInput(f"{self.year}-{self.month:02d} is not a month")

    @classmethod
    def parse(cls, text: object) -> Period:
        """``2026-10`` -> October 2026."""
        match = _MONTH_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None or not 1 <= int(match[2]) <= 12 or not 1970 <= int(match[1]) <= 9000:
            raise InvalidInput(f"{text!r} is not a month like 2026-10")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def title(self) -> str:
        return f"{MONTHS[self.month - 1]} {self.year}"

    @property
    def short(self) -> str:
        return f"{MONTHS[self.month - 1][:3]} {self.year}"

    def shift(self, months: int) -> Period:
        index = self.year * 12 + self.month - 1 + months
        return Period(index // 12, index % 12 + 1)

    def start(self, zone: ZoneInfo) -> datetime:
        """The first instant of the month (local midnight on the 1st), in UTC."""
        return datetime(self.year, self.month, 1, tzinfo=zone).astimezone(UTC)

    def end(self, zone: ZoneInfo) -> datetime:
        """The first instant after the month, in UTC: periods are [start, end)."""
        return self.shift(1).start(zone)

    def seconds(self, zone: ZoneInfo) -> int:
        return int((self.end(zone) - self.start(zone)).total_seconds())

    def hours(self, zone: ZoneInfo) -> Decimal:
        """Hours in the month: 745 for October in Europe/Amsterdam, 743 for March."""
        return Decimal(self.seconds(zone)) / 3600


@dataclass(frozen=True)
class PeriodRange:
    """What a report covers: one month, or a quarter of three."""

    first: Period
    last: Period

    @classmethod
    def parse(cls, text: object) -> PeriodRange:
        """``2026-10`` (a month) or ``2026-Q4`` (a quarter)."""
        if isinstance(text, str) and (match := _QUARTER_RE.fullmatch(text)):
            first = Period(int(match[1]), 3 * int(match[2]) - 2)
            return cls(first, first.shift(2))
        try:
            month = Period.parse(text)
        except InvalidInput:
            raise InvalidInput(
                f"{text!r} is not a month like 2026-10 or a quarter like 2026-Q4"
            ) from None
        return cls(month, month)

    @property
    def months(self) -> tuple[Period, ...]:
        out = [self.first]
        while out[-1] < self.last:
            out.append(out[-1].shift(1))
        return tuple(out)

    @property
    def is_quarter(self) -> bool:
        return self.first != self.last

    @property
    def label(self) -> str:
        if self.is_quarter:
            return f"{self.first.year}-Q{(self.first.month + 2) // 3}"
        return str(self.first)

    @property
    def title(self) -> str:
        if self.is_quarter:
            return (
                f"Q{(self.first.month + 2) // 3} {self.first.year} "
                f"({MONTHS[self.first.month - 1]}\u2013{MONTHS[self.last.month - 1]})"
            )
        return self.first.title
