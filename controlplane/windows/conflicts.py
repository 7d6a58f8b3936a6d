"""Conflicts between windows over a horizon: windows lost to freezes, and risky overlaps.

- ``window-in-freeze``: an occurrence of a maintenance window overlaps a freeze that gates
  what the window is for. For a host's patch window that is a freeze of the host, of
  everything, or of any member (or member's app) placed on that host. The freeze wins, so
  that night's patching is lost; the operators should know in advance.
- ``overlap``: maintenance windows of two different hosts are open at the same time while
  some member's app has instances on both hosts, so patching both at once could take down
  several replicas of that app together. Stagger the windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from controlplane.windows.gate import Gate, span
from controlplane.windows.rules import Occurrence, ScopeKind, Window, WindowKind, utc_text


class ConflictKind(Enum):
    WINDOW_IN_FREEZE = "window-in-freeze"
    OVERLAP = "overlap"


@dataclass(frozen=True)
class Conflict:
    """One maintenance window occurrence and the occurrences it conflicts with."""

    kind: ConflictKind
    window: Occurrence
    others: tuple[Occurrence, ...]
    hosts: tuple[str, ...]
    shared: tuple[str, ...]  # member/app stacks at risk (overlap) or members frozen

    @property
    def inside(self) -> bool:
        """True when the window lies wholly inside one of the others."""
        return any(o.start <= self.window.start and self.window.end <= o.end for o in self.others)

    @property
    def message(self) -> str:
        names = ", ".join(o.window.name for o in self.others)
        if self.kind is ConflictKind.WINDOW_IN_FREEZE:
            how = "falls inside" if self.inside else "overlaps"
            return f"{self.window.window.name} ({span(self.window)}) {how} freeze {names}"
        return (
            f"{self.window.window.name} ({span(self.window)}) overlaps {names}; "
            f"both hosts run {', '.join(self.shared)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "window": self.window.window.name,
            "start_utc": utc_text(self.window.start),
            "end_utc": utc_text(self.window.end),
            "start_local": self.window.local_start.isoformat(),
            "end_local": self.window.local_end.isoformat(),
            "inside": self.inside,
            "with": [o.to_json() for o in self.others],
            "hosts": list(self.hosts),
            "shared": list(self.shared),
            "message": self.message,
        }


def find_conflicts(gate: Gate, start: datetime, end: datetime) -> list[Conflict]:
    """Every conflict among occurrences overlapping [start, end), ordered by time."""
    occurrences: dict[str, list[Occurrence]] = {w.name: [] for w in gate.windows}
    for o in gate.occurrences_between(start, end):
        occurrences[o.window.name].append(o)
    out: list[Conflict] = []
    maintenance = [w for w in gate.windows if w.kind is WindowKind.MAINTENANCE]
    for w in maintenance:
        freezes = [f for f in _gating(gate, w) if f.kind is WindowKind.FREEZE]
        hosts: tuple[str, ...] = (w.scope.host,) if w.scope.host else ()
        found = _pairs(occurrences[w.name], [occurrences[f.name] for f in freezes])
        for occ, others in found:
            frozen = sorted({o.window.scope.member or str(o.window.scope) for o in others})
            out.append(Conflict(ConflictKind.WINDOW_IN_FREEZE, occ, others, hosts, tuple(frozen)))
    host_windows = [w for w in maintenance if w.scope.kind is ScopeKind.HOST]
    for i, a in enumerate(host_windows):
        for b in host_windows[i + 1 :]:
            if a.scope.host == b.scope.host:
                continue
            shared = gate.placed_on(str(a.scope.host)) & gate.placed_on(str(b.scope.host))
            if not shared:
                continue
            labels = tuple(f"{m}/{app}" for m, app in sorted(shared))
            pair = (str(a.scope.host), str(b.scope.host))
            for occ, others in _pairs(occurrences[a.name], [occurrences[b.name]]):
                out.append(Conflict(ConflictKind.OVERLAP, occ, others, pair, labels))
    out.sort(key=lambda c: (c.window.start, c.kind.value, c.window.window.name))
    return out


def _gating(gate: Gate, w: Window) -> tuple[Window, ...]:
    """The windows that gate the same work as ``w`` does."""
    s = w.scope
    if s.kind is ScopeKind.HOST:
        return gate.windows_for_host(str(s.host))
    if s.kind in (ScopeKind.MEMBER, ScopeKind.APP):
        return gate.windows_for_member(str(s.member), s.app)
    return gate.windows


def _pairs(
    mine: list[Occurrence], theirs: Sequence[list[Occurrence]]
) -> Iterator[tuple[Occurrence, tuple[Occurrence, ...]]]:
    """Each of ``mine`` with the occurrences in ``theirs`` that overlap it."""
    found: dict[int, list[Occurrence]] = {}
    for other in theirs:
        for i, o in _overlaps(mine, other):
            found.setdefault(i, []).append(o)
    for i in sorted(found):
        yield mine[i], tuple(sorted(found[i], key=lambda o: (o.start, o.window.name)))


def _overlaps(a: list[Occurrence], b: list[Occurrence]) -> Iterator[tuple[int, Occurrence]]:
    # Each list is one window's occurrences: one duration, so ends are sorted like starts.
    first = 0
    for i, x in enumerate(a):
        while first < len(b) and b[first].end <= x.start:
            first += 1
        j = first
        while j < len(b) and b[j].start < x.end:
            if b[j].end > x.start:
                yield i, b[j]
            j += 1
