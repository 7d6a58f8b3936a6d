"""Cached, lazy expansion of windows into sorted occurrences, and merged lanes to bisect.

``Expansion`` pulls one window's occurrences from dateutil only as far as a caller asks,
and keeps them (UTC epoch seconds in an ``array``) so each occurrence is computed once while
callers stay near the same time. ``Lane`` merges the occurrences of every window sharing a
scope and a kind into one start-sorted list with a running maximum of end times, so "what is
active at t" and "what starts next after t" are a bisect and a short backward scan however
many windows the lane holds. Both grow in chunks: a gate decision never expands a whole year.

Both hold a bounded stretch of time. Asked about a moment before that stretch, or more than
``KEEP_SECONDS`` past its beginning, they start over near the moment: the rule restarts at a
recurrence period boundary (``Window.rule_from``), never at the window's first occurrence.
So the work and the memory of a lookup stay the same in 2036 as in 2026, and a service that
runs for years keeps at most a couple of years of occurrences, not all of them.
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
# behind what has been expanded keeps such late arrivals out of already-merged lanes. It
# also bounds how far a local restart point and its UTC instant can disagree.
SETTLE_SECONDS = 3 * 3600.0
# More than two gate horizons (366 days), so a decision that searches a year ahead for the
# next opening and the next decision back at now share one stretch instead of each
# starting over.
KEEP_SECONDS = 800 * 86400.0
# How far a search for the next occurrence looks ahead before it says there is none.
AHEAD_SECONDS = 10 * 366 * 86400.0


def ts(at: datetime) -> float:
    return at.timestamp()


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Expansion:
    """One window's occurrence starts (UTC epoch seconds, sorted), expanded on demand.

    Every occurrence starting in [``lo``, ``covered``) is in ``starts``; ``pulled`` counts
    the occurrences taken from dateutil, which is the work done.
    """

    __slots__ = (
        "_iter",
        "base",
        "covered",
        "done",
        "duration",
        "lo",
        "pulled",
        "starts",
        "usable",
        "window",
    )

    def __init__(self, window: Window) -> None:
        self.window = window
        self.duration = window.duration.total_seconds()
        self.usable = self.duration - window.cutoff.total_seconds()
        self.pulled = 0
        self.starts: array[float] = array("d")
        self._iter: Iterator[datetime] = iter(())
        self.base = self.lo = self.covered = math.inf  # nothing expanded yet
        self.done = False

    def _restart(self, lo: float) -> None:
        """Expand afresh from a period boundary a chunk before ``lo``; forget the rest."""
        # Reaching back a chunk lets callers step back a little without starting over.
        rule, anchor = self.window.rule_from(utc(lo - CHUNK_SECONDS - 2 * SETTLE_SECONDS))
        self._iter = iter(rule)
        self.starts = array("d")
        self.base = lo
        self.lo = self.covered = -math.inf if anchor is None else ts(anchor) + SETTLE_SECONDS
        self.done = False

    def cover(self, lo: float, hi: float) -> None:
        """Make sure every occurrence that starts in [lo, hi) is expanded."""
        if lo < self.lo or lo > self.base + KEEP_SECONDS:
            self._restart(lo)
        if hi <= self.covered:
            return
        starts = self.starts
        for local in self._iter:
            self.pulled += 1
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
        self.cover(lo - self.duration, hi)
        first = bisect_right(self.starts, lo - self.duration)
        last = bisect_left(self.starts, hi)
        return self.starts[first:last]

    def after(self, at: float, count: int) -> list[float]:
        """The next ``count`` starts at or after ``at`` (fewer if none within ten years)."""
        found: list[float] = []
        hi = at + CHUNK_SECONDS
        while True:
            self.cover(at, hi)
            i = bisect_left(self.starts, at)
            found = list(self.starts[i : i + count])
            if len(found) >= count or self.done or hi - at > AHEAD_SECONDS:
                return found
            hi += CHUNK_SECONDS * 4

    def occurrence(self, start: float) -> Occurrence:
        return Occurrence(self.window, utc(start))


class Lane:
    """The merged occurrences of several windows, for bisecting by time.

    Parallel arrays, sorted by start: ``starts``, ``ends``, ``usable`` (end minus cutoff),
    ``owner`` (index of the expansion) and ``maxend`` (running maximum of ``ends``, which
    bounds the backward scan in ``active``). Every occurrence starting in [``lo``, ``hi``)
    is merged; ``lo`` is at least the longest duration before any moment asked about, so
    nothing active then is missing.
    """

    def __init__(self, expansions: Sequence[Expansion]) -> None:
        self.expansions = list(expansions)
        self.longest = max((e.duration for e in self.expansions), default=0.0)
        self._reset(math.inf)

    def _reset(self, lo: float) -> None:
        self.starts: array[float] = array("d")
        self.ends: array[float] = array("d")
        self.usable: array[float] = array("d")
        self.maxend: array[float] = array("d")
        self.owner: list[int] = []
        self.lo = self.hi = lo

    @property
    def complete(self) -> bool:
        """No expansion has an occurrence left to merge."""
        return all(e.done and (not e.starts or e.starts[-1] < self.hi) for e in self.expansions)

    def ensure(self, at: float) -> None:
        """Merge every occurrence active at ``at`` or starting before it (and a chunk more)."""
        if at - self.longest < self.lo or at > self.lo + KEEP_SECONDS:
            self._reset(at - self.longest - CHUNK_SECONDS)
        if at < self.hi or not self.expansions:
            return
        new_hi = at + CHUNK_SECONDS
        batch: list[tuple[float, float, float, int]] = []
        for k, e in enumerate(self.expansions):
            e.cover(self.hi, new_hi + SETTLE_SECONDS)
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
