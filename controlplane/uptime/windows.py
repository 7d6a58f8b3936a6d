"""What uptime needs to know about maintenance windows, and the adapters that answer it.

The availability core and the probe job only ever ask two questions, passed in as plain
callables so they never depend on how windows are modelled:

* ``in_window(instance, at)``: did a maintenance window cover this instance at ``at``?
* ``next_window_start(member, at)``: when does the member's next maintenance window start?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.fleet.model import Fleet, PlacedInstance

if TYPE_CHECKING:
    from controlplane.windows.gate import Gate
    from controlplane.windows.rules import Window

InWindow = Callable[[PlacedInstance, datetime], bool]
NextWindowStart = Callable[[str, datetime], datetime | None]

_INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class WindowCalendar:
    """The two window questions uptime asks, bundled."""

    in_window: InWindow
    next_window_start: NextWindowStart


def no_windows() -> WindowCalendar:
    """A calendar without maintenance windows: nothing is ever left out of the SLA."""
    return WindowCalendar(in_window=lambda _i, _at: False, next_window_start=lambda _m, _at: None)


def gate_calendar(gate: Gate) -> WindowCalendar:
    """Answer from the maintenance windows (not freezes) of a ``controlplane.windows`` gate.

    A window covers an instance when it is scoped to everything, to the instance's member,
    to that member's app, or to the instance's host (the gate's own scoping rules).
    """
    from controlplane.windows.rules import ScopeKind, WindowKind, scope_key

    maintenance = tuple(w for w in gate.windows if w.kind is WindowKind.MAINTENANCE)
    covering: dict[tuple[str, str, str], tuple[Window, ...]] = {}
    of_member: dict[str, tuple[Window, ...]] = {}

    def for_instance(i: PlacedInstance) -> tuple[Window, ...]:
        key = (i.member, i.app, i.host)
        if key not in covering:
            keys = {
                scope_key(ScopeKind.EVERYTHING),
                scope_key(ScopeKind.MEMBER, i.member),
                scope_key(ScopeKind.APP, i.member, i.app),
                scope_key(ScopeKind.HOST, i.host),
            }
            covering[key] = tuple(w for w in maintenance if w.scope.key in keys)
        return covering[key]

    def in_window(instance: PlacedInstance, at: datetime) -> bool:
        windows = for_instance(instance)
        return bool(windows) and bool(gate.occurrences_between(at, at + _INSTANT, windows))

    def next_window_start(member: str, at: datetime) -> datetime | None:
        if member not in of_member:
            found: dict[str, Window] = {
                w.name: w for w in maintenance if w.scope.key == scope_key(ScopeKind.MEMBER, member)
            }
            found.update({w.name: w for w in maintenance if w.scope.kind is ScopeKind.EVERYTHING})
            for inst in gate.fleet.instances(member=member):
                found.update({w.name: w for w in for_instance(inst)})
            of_member[member] = tuple(found.values())
        starts = [
            o.start for w in of_member[member] for o in gate.next_occurrences(w, at + _INSTANT, 1)
        ]
        return min(starts, default=None)

    return WindowCalendar(in_window=in_window, next_window_start=next_window_start)


def fleet_calendar(fleet_dir: Path, fleet: Fleet) -> WindowCalendar:
    """The calendar of the fleet's ``windows.yml`` (no windows when it has none)."""
    from controlplane.windows.loader import load_gate

    return gate_calendar(load_gate(fleet_dir, fleet))
