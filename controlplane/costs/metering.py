"""Metering: reservation intervals -> what each member held within a period.

Pure: the intervals and the periods' bounds come in, no clock is read. Every sum is an
integer (milli-units x seconds), so nothing rounds here. A period is [start, end) in UTC;
an interval still open (``end`` None) counts to the end of every period it reaches.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from controlplane.costs.model import NO_RESOURCES, Interval, Milli
from controlplane.fleet.model import Fleet

MILLI_HOUR = 1000 * 3600  # milli-unit-seconds in one unit-hour


@dataclass(frozen=True)
class HostSize:
    """The reference host a standalone stack is built from (milli-units), and its minimum."""

    capacity: Milli
    min_hosts: int = 1

    def needed(self, vcpu: int, ram_gib: int, disk_gib: int) -> int:
        """Whole reference hosts needed to hold these milli-units; none when nothing is held."""
        if not (vcpu or ram_gib or disk_gib):
            return 0
        cap = self.capacity
        return max(
            self.min_hosts,
            -(-vcpu // cap.vcpu),
            -(-ram_gib // cap.ram_gib),
            -(-disk_gib // cap.disk_gib),
        )


@dataclass(frozen=True)
class Usage:
    """One member's reservations over one period."""

    held: Milli  # milli-unit-seconds of vCPU, RAM GiB and disk GiB
    peak: Milli  # the most held at any moment, per resource
    host_seconds: int  # reference-host-seconds a standalone stack would have needed
    apps: frozenset[str]

    def exact_hours(self) -> tuple[Fraction, Fraction, Fraction]:
        """vCPU-hours, RAM GiB-hours and disk GiB-hours, exactly."""
        v, r, d = (Fraction(x, MILLI_HOUR) for x in self.held)
        return v, r, d

    def hours(self) -> tuple[Decimal, Decimal, Decimal]:
        """The same, rounded to 0.01 for display."""
        v, r, d = (Decimal(x) / MILLI_HOUR for x in self.held)
        q = Decimal("0.01")
        return v.quantize(q), r.quantize(q), d.quantize(q)


NO_USAGE = Usage(NO_RESOURCES, NO_RESOURCES, 0, frozenset())


@dataclass(frozen=True)
class Metered:
    """Every member's usage over one period [start, end)."""

    start: datetime
    end: datetime
    members: Mapping[str, Usage]

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def usage(self, member: str) -> Usage:
        return self.members.get(member, NO_USAGE)


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


Event = tuple[int, int, int, int]


def meter_many(
    intervals: Iterable[Interval],
    bounds: Sequence[tuple[datetime, datetime]],
    size: HostSize | None = None,
) -> list[Metered]:
    """Meter several non-overlapping periods in one pass over the intervals.

    ``bounds`` are (start, end) pairs; they need not be contiguous. Each interval is cut at
    the period edges, so a member that grew mid-month pays the new size only for the hours
    it held it.
    """
    order = sorted(range(len(bounds)), key=lambda i: bounds[i][0])
    starts = [_ts(bounds[i][0]) for i in order]
    ends = [_ts(bounds[i][1]) for i in order]
    for i in range(1, len(order)):
        if starts[i] < ends[i - 1]:
            raise ValueError("metering periods overlap")
    by_member: dict[str, list[Interval]] = {}
    for iv in intervals:
        by_member.setdefault(iv.member, []).append(iv)
    usage: list[dict[str, Usage]] = [{} for _ in order]
    last_end = ends[-1] if ends else 0
    # One member at a time, so only that member's events are alive at once: a year of
    # hourly history for hundreds of members stays cheap for the garbage collector.
    for member, held in by_member.items():
        events: list[list[Event]] = [[] for _ in order]
        apps: list[set[str]] = [set() for _ in order]
        for iv in held:
            a = _ts(iv.start)
            b = last_end if iv.end is None else _ts(iv.end)
            v, r, d = iv.amount
            j = max(bisect.bisect_right(starts, a) - 1, 0)
            while j < len(starts) and starts[j] < b:
                lo, hi = max(a, starts[j]), min(b, ends[j])
                if lo < hi:
                    events[j].append((lo, v, r, d))
                    events[j].append((hi, -v, -r, -d))
                    apps[j].add(iv.app)
                j += 1
        for j, ev in enumerate(events):
            if ev:
                usage[j][member] = _sweep(ev, size, frozenset(apps[j]))
    out: list[Metered | None] = [None] * len(bounds)
    for j, i in enumerate(order):
        out[i] = Metered(bounds[i][0], bounds[i][1], usage[j])
    return [m for m in out if m is not None]


def _sweep(events: list[Event], size: HostSize | None, apps: frozenset[str]) -> Usage:
    # The member's total reservation is piecewise constant between events: walk the
    # segments in time order, adding amount x length and tracking the peak.
    events.sort()
    v = r = d = 0
    hv = hr = hd = 0
    pv = pr = pd = 0
    host_seconds = 0
    prev = events[0][0]
    for t, dv, dr, dd in events:
        if t > prev:
            if v or r or d:
                dt = t - prev
                hv += v * dt
                hr += r * dt
                hd += d * dt
                pv, pr, pd = max(pv, v), max(pr, r), max(pd, d)
                if size is not None:
                    host_seconds += size.needed(v, r, d) * dt
            prev = t
        v += dv
        r += dr
        d += dd
    return Usage(Milli(hv, hr, hd), Milli(pv, pr, pd), host_seconds, apps)


def meter(
    intervals: Iterable[Interval], start: datetime, end: datetime, size: HostSize | None = None
) -> Metered:
    """Every member's resource-seconds held within [start, end)."""
    return meter_many(intervals, [(start, end)], size)[0]


# -- where the intervals come from -----------------------------------------------------------


def current_reservations(fleet: Fleet) -> dict[tuple[str, str, str], Milli]:
    """What the fleet reserves now per (member, app, host), replicas on one host summed."""
    out: dict[tuple[str, str, str], Milli] = {}
    for inst in fleet.instances():
        key = (inst.member, inst.app, inst.host)
        out[key] = out.get(key, NO_RESOURCES).plus(Milli.of(inst.reserved))
    return out


def fleet_capacity(fleet: Fleet) -> Milli:
    """The capacity of every host in the fleet, summed."""
    total = NO_RESOURCES
    for host in fleet.hosts:
        total = total.plus(Milli.of(host.capacity))
    return total


def merge_history(
    declared: Iterable[Interval], stored: Sequence[Interval], since: datetime | None = None
) -> list[Interval]:
    """Declared history fills the time before the stored history begins.

    The stored history (recorded by the control plane) is the truth from its first record
    on (``since``; the earliest stored start when not given): declared intervals are cut
    off there, and dropped if they start after it. With no stored history at all the
    declared intervals stand as written.
    """
    if since is None:
        if not stored:
            return list(declared)
        since = min(iv.start for iv in stored)
    merged: list[Interval] = []
    for iv in declared:
        if iv.start >= since:
            continue
        end = since if iv.end is None or iv.end > since else iv.end
        merged.append(Interval(iv.member, iv.app, iv.host, iv.amount, iv.start, end))
    merged.extend(stored)
    return merged
