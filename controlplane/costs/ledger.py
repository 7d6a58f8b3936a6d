"""A fleet, its cost book and its reservation history: everything needed to allocate a period.

``Ledger`` is pure. ``open_ledger`` is the one place that reads the cost file and the stored
history, recording the current fleet first when the history is still empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from zoneinfo import ZoneInfo

from controlplane.costs.allocate import Allocation, allocate
from controlplane.costs.history import ReservationHistory
from controlplane.costs.metering import (
    HostSize,
    fleet_capacity,
    merge_history,
    meter_many,
)
from controlplane.costs.model import CostBook, Interval, Milli
from controlplane.costs.periods import Period
from controlplane.errors import InvalidInput
from controlplane.fleet.model import Fleet

TREND_PERIODS = 12


@dataclass(frozen=True)
class Ledger:
    fleet: Fleet
    book: CostBook
    history: tuple[Interval, ...]

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.fleet.timezone)

    @cached_property
    def host_size(self) -> HostSize:
        ref = self.book.reference_host
        return HostSize(Milli.of(ref.capacity), ref.min_hosts)

    @cached_property
    def capacity(self) -> Milli:
        return fleet_capacity(self.fleet)

    def names(self) -> dict[str, str]:
        return {m.slug: m.name for m in self.fleet.members}

    def allocations(self, periods: Sequence[Period]) -> list[Allocation]:
        """Allocate each period; one that the cost file does not cover is bad input."""
        for period in periods:
            self.book.costs(period)
        bounds = [(p.start(self.zone), p.end(self.zone)) for p in periods]
        metered = meter_many(self.history, bounds, self.host_size)
        return [
            allocate(self.book, p, m, self.capacity) for p, m in zip(periods, metered, strict=True)
        ]

    def allocation(self, period: Period) -> Allocation:
        return self.allocations([period])[0]

    def trend(self, last: Period, count: int = TREND_PERIODS) -> list[tuple[Period, Allocation]]:
        """The ``count`` months up to ``last`` that can be allocated, oldest first.

        Months without cost data are left out, and so are months that cannot be split (a
        reserved-key pool in a month before any reservation was recorded): a trend shows
        what there is rather than failing the whole report.
        """
        months = [last.shift(-i) for i in reversed(range(count))]
        covered = [p for p in months if self.book.has(p)]
        bounds = [(p.start(self.zone), p.end(self.zone)) for p in covered]
        out: list[tuple[Period, Allocation]] = []
        for period, metered in zip(
            covered, meter_many(self.history, bounds, self.host_size), strict=True
        ):
            try:
                out.append((period, allocate(self.book, period, metered, self.capacity)))
            except InvalidInput:
                continue
        return out


def open_ledger(fleet: Fleet, book: CostBook, history: ReservationHistory, now: datetime) -> Ledger:
    """The ledger over the stored history merged with the cost file's declared history.

    When the stored history is empty, the current fleet is recorded as of ``now`` first,
    so the stored history begins there and the declared history fills the time before it.
    Check the cost file and the periods before calling this: it may write.
    """
    if history.is_empty():
        history.record(fleet, now)
    merged = merge_history(book.history, history.intervals(), history.first_recorded())
    return Ledger(fleet, book, tuple(merged))
