"""Cached, lazy expansion of windows into sorted occurrences, and merged lanes to bisect.

``Expansion`` pulls one window's occurrences from dateutil only as far as a caller asks,
and keeps them (UTC epoch seconds in an ``array``) so each occurrence is computed once per
process. ``Lane`` merges the occurrences of every window sharing a scope and a kind into one
start-sorted list with a running maximum of end times, so "what is active at t" and "what
starts next after t" are a bisect and a short backward scan however many windows the lane
holds. Both grow in chunks: a gate decision never expands a whole year.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from controlplane.windows.rules import Occurrence, Window

CHUNK_SECONDS = 35 * 86400.0
# Starts can come out of dateutil slightly out of UTC order around a spring-forward gap
# (02:45 in the gap is 01:45Z, 03:00 CEST is 01:00Z); merging only occurrences this far
# behind what has been expanded keeps such late arrivals out of already-merged lanes.
SETTLE_SECONDS = 3 * 3600.0


def ts(at: datetime) -> float:
    return at.timestamp()


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Expansion:
    """One window's occurrence starts (UTC epoch seconds, sorted), expanded on demand."""

    __slots__ = ("_iter", "covered", "done", "duration", "starts", "usable", "window")

    def __init__(self, window: Window) -> None:
        self.window = window
        self.starts: array[float] = array("d")
        self.duration = window.duration.total_seconds()
        self.usable = self.duration - window.cutoff.total_seconds()
        self._iter: Iterator[datetime] = iter(window.rule())
        self.covered = -math.inf  # every start below this is in ``starts``
        self.done = False

    def extend_to(self, hi: float) -> None:
        """Make sure every occurrence that starts before ``hi`` is expanded."""
        if hi <= self.covered:
            return
        starts = self.starts
        for local in self._iter:
            t = local.timestamp()  # aware local time, fold=0: the documented DST choice
            if not starts or t > starts[-1]:
                starts.append(t)
            elif t < starts[-1]:
                insort(starts, t)
            self.covered = max(self.covered, t)
            if t >= hi:
                return
        self.done = True
        self.covered = math.inf

    def overlapping(self, lo: float, hi: float) -> array[float]:
        """Starts of occurrences overlapping [lo, hi)."""
        self.extend_to(hi)
        first = bisect_right(self.starts, lo - self.duration)
        last = bisect_left(self.starts, hi)
        return self.starts[first:last]

    def after(self, at: float, count: int) -> list[float]:
        """The next ``count`` starts at or after ``at``."""
        found: list[float] = []
        hi = at + CHUNK_SECONDS
        while True:
            self.extend_to(hi)
            i = bisect_left(self.starts, at)
            found = list(self.starts[i : i + count])
            if len(found) >= count or self.done:
                return found
            hi += CHUNK_SECONDS * 4

    def occurrence(self, start: float) -> Occurrence:
        return Occurrence(self.window, utc(start))


class Lane:
    """The merged occurrences of several windows, for bisecting by time.

    Parallel arrays, sorted by start: ``starts``, ``ends``, ``usable`` (end minus cutoff),
    ``owner`` (index of the expansion) and ``maxend`` (running maximum of ``ends``, which
    bounds the backward scan in ``active``).
    """

    def __init__(self, expansions: Sequence[Expansion]) -> None:
        self.expansions = list(expansions)
        self.starts: array[float] = array("d")
        self.ends: array[float] = array("d")
        self.usable: array[float] = array("d")
        self.maxend: array[float] = array("d")
        self.owner: list[int] = []
        self.hi = -math.inf  # every start below this is merged

    @property
    def complete(self) -> bool:
        return all(e.done for e in self.expansions) and len(self.starts) == sum(
            len(e.starts) for e in self.expansions
        )

    def ensure(self, hi: float) -> None:
        """Merge every occurrence that starts before ``hi`` (and a chunk more)."""
        if hi < self.hi or not self.expansions:
            return
        new_hi = hi + CHUNK_SECONDS
        batch: list[tuple[float, float, float, int]] = []
        for k, e in enumerate(self.expansions):
            e.extend_to(new_hi + SETTLE_SECONDS)
            lo_i = bisect_left(e.starts, self.hi)
            hi_i = bisect_left(e.starts, new_hi)
            d, u = e.duration, e.usable
            batch.extend((s, s + d, s + u, k) for s in e.starts[lo_i:hi_i])
        batch.sort()
        running = self.maxend[-1] if self.maxend else -math.inf
        for s, end, usable, k in batch:
            self.starts.append(s)
            self.ends.append(end)
            self.usable.append(usable)
            self.owner.append(k)
            running = max(running, end)
            self.maxend.append(running)
        self.hi = new_hi

    def active(self, at: float) -> list[int]:
        """Indices of occurrences with start <= at < end."""
        self.ensure(at)
        i = bisect_right(self.starts, at) - 1
        out: list[int] = []
        while i >= 0 and self.maxend[i] > at:
            if self.ends[i] > at:
                out.append(i)
            i -= 1
        return out

    def next_start(self, after: float, limit: float) -> float | None:
        """The first start strictly after ``after`` and before ``limit``, if any."""
        if not self.expansions:
            return None
        self.ensure(after)
        while True:
            i = bisect_right(self.starts, after)
            if i < len(self.starts):
                start = self.starts[i]
                return start if start < limit else None
            if self.hi >= limit or self.complete:
                return None
            self.ensure(self.hi)

    def occurrence(self, i: int) -> Occurrence:
        return Occurrence(self.expansions[self.owner[i]].window, utc(self.starts[i]))
