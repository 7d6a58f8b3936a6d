"""Availability per member and app over every period, read from the probe store.

The 1 h period is counted from raw samples, to the second. Periods of a day and longer are
counted in whole clock hours from the hourly rows: the current hour and the ones before it
(``availability.first_hour``).

A scrape asks for all of this every few seconds, so ``UptimeReader`` keeps the sums over
*closed* time (older than ``grace``, so no probe round can still be writing into it): whole
hours for the long periods and all time, 5-minute blocks of raw samples for the last hour.
Each scrape re-reads only the open hours and the few minutes at either end of the last hour.
Closed time never changes, so every control-plane node still reports the same figures from
the same store.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controlplane.fleet.model import Fleet
from controlplane.uptime.availability import Availability, Counts, Period, first_hour, floor_hour
from controlplane.uptime.store import AppKey, ProbeStore

LONG_PERIODS = (Period.DAY, Period.WEEK, Period.MONTH)
BLOCK = 300  # seconds: the raw samples of the last hour are summed in 5-minute blocks


@dataclass(frozen=True)
class UptimeCounts:
    """Counts per (member, app) for each period, and for all time."""

    periods: Mapping[Period, Mapping[AppKey, Counts]]
    totals: Mapping[AppKey, Counts]


class UptimeReader:
    """Reads ``UptimeCounts`` from a ``ProbeStore``, caching the sums of closed hours."""

    def __init__(self, store: ProbeStore, *, grace: timedelta = timedelta(minutes=5)) -> None:
        self.store = store
        self.grace = grace
        self._lock = threading.Lock()
        self._closed_key: tuple[datetime, datetime] | None = None
        self._closed: dict[AppKey, list[Counts]] = {}
        self._total_until: datetime | None = None
        self._total: dict[AppKey, Counts] = {}
        self._blocks: dict[datetime, dict[AppKey, Counts]] = {}

    def counts(self, now: datetime) -> UptimeCounts:
        boundary = self.prepare(now)
        with self._lock:
            closed, totals = self._closed, dict(self._total)
        open_counts = self.store.hourly_counts([boundary])
        hour = self._last_hour(now)

        periods: dict[Period, dict[AppKey, Counts]] = {Period.HOUR: hour}
        for i, period in enumerate(LONG_PERIODS):
            sums: dict[AppKey, Counts] = {k: v[i] for k, v in closed.items()}
            for key, [c] in open_counts.items():
                sums[key] = sums.get(key, Counts()) + c
            periods[period] = {k: v for k, v in sums.items() if v.total}
        for key, [c] in open_counts.items():
            totals[key] = totals.get(key, Counts()) + c
        return UptimeCounts(periods=periods, totals=totals)

    def prepare(self, now: datetime) -> datetime:
        """Bring the cached closed sums up to ``now``; returns where the open hours begin.

        The service calls this on a schedule, so a scrape rarely pays for a new hour.
        """
        boundary = floor_hour(now - self.grace)  # hours before this are closed
        starts = [first_hour(p, now) for p in LONG_PERIODS]
        with self._lock:
            fresh = self._closed_key == (starts[0], boundary)
        if not fresh:
            self._prepare_hours(starts, boundary)
        first = _block_after(now - Period.HOUR.delta)
        self._closed_blocks(first, max(first, _block_before(now - self.grace)))
        return boundary

    def _prepare_hours(self, starts: list[datetime], boundary: datetime) -> None:
        with self._lock:
            if self._closed_key == (starts[0], boundary):
                return
            if self._total_until is None or boundary < self._total_until:
                # From scratch: the periods and all time in one pass over the table.
                both = self.store.hourly_counts([*starts, None], end=boundary)
                self._closed = {k: v[:-1] for k, v in both.items()}
                self._total = {k: v[-1] for k, v in both.items()}
            else:
                self._closed = self.store.hourly_counts(starts, end=boundary)
                # All-time sums only grow: add the hours that closed since the last time.
                if boundary > self._total_until:
                    added = self.store.hourly_counts([self._total_until], end=boundary)
                    for k, [v] in added.items():
                        self._total[k] = self._total.get(k, Counts()) + v
            self._total_until = boundary
            self._closed_key = (starts[0], boundary)

    def _last_hour(self, now: datetime) -> dict[AppKey, Counts]:
        """Raw counts over [now - 1 h, now]: cached closed blocks plus both ragged ends."""
        start, end = now - Period.HOUR.delta, now + timedelta(microseconds=1)
        first, closed_until = _block_after(start), _block_before(now - self.grace)
        if closed_until <= first:
            return self.store.raw_counts(start, end)
        total = _add(self.store.raw_counts(start, first), self.store.raw_counts(closed_until, end))
        for counts in self._closed_blocks(first, closed_until):
            total = _add(total, counts)
        return {k: v for k, v in total.items() if v.total}

    def _closed_blocks(self, first: datetime, until: datetime) -> list[dict[AppKey, Counts]]:
        """The raw counts of every closed block in [first, until), read once each."""
        step = timedelta(seconds=BLOCK)
        with self._lock:
            self._blocks = {b: c for b, c in self._blocks.items() if first <= b < until}
            block = first
            while block < until:
                if block not in self._blocks:
                    self._blocks[block] = self.store.raw_counts(block, block + step)
                block += step
            return list(self._blocks.values())


def _block_before(at: datetime) -> datetime:
    return datetime.fromtimestamp(at.timestamp() // BLOCK * BLOCK, UTC)


def _block_after(at: datetime) -> datetime:
    before = _block_before(at)
    return before if before == at else before + timedelta(seconds=BLOCK)


def _add(a: Mapping[AppKey, Counts], b: Mapping[AppKey, Counts]) -> dict[AppKey, Counts]:
    out = dict(a)
    for key, counts in b.items():
        out[key] = out[key] + counts if key in out else counts
    return out


def availabilities(
    fleet: Fleet,
    counts: UptimeCounts,
    periods: tuple[Period, ...] = tuple(Period),
    member: str | None = None,
) -> list[Availability]:
    """Every (member, app) the fleet runs, for each period, in fleet order."""
    out: list[Availability] = []
    for stack in fleet.stacks:
        if member is not None and stack.member != member:
            continue
        slo = fleet.member(stack.member).slo
        for sa in stack.apps:
            for period in periods:
                c = counts.periods.get(period, {}).get((stack.member, sa.app), Counts())
                out.append(Availability(stack.member, sa.app, period, slo, c))
    return out
