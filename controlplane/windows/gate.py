"""The deployment gate: may this change start now, why, and when could it?

Pure: the fleet, the windows and ``now`` (UTC-aware) are passed in. Rules, in order:

1. A freeze beats any window. A member's change is frozen by a freeze scoped to everything,
   to the member, to an app the change touches, or to a host the change touches. Host work
   (patching) is frozen by freezes of the host, of everything, and of every member (or
   member's app) placed on that host.
2. Under ``window-required`` (and always for host work) every instance the change touches
   must be inside an open maintenance window that covers it, before that window's cutoff.
   A window covers an instance when it is scoped to everything, the member, the member's
   app, or the instance's host; a host-scoped window therefore opens a change only if every
   touched host has one open. ``avoid-freezes`` members only need rule 1.
3. With several calendars and scopes, the change is allowed only if every one allows it.

An emergency override (a non-empty reason) turns a refusal into an allowed decision that
names what it overrode; the deploy engine records it.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from controlplane.clock import Clock
from controlplane.errors import InvalidInput
from controlplane.fleet.model import DeployPolicy, Fleet
from controlplane.windows.bounds import (
    DEFAULT_LIMITS,
    Limits,
    check_count,
    check_distance,
    check_found,
    check_span,
    utc_moment,
)
from controlplane.windows.decision import Decision, Reason, Verdict, few, override, span, when
from controlplane.windows.rules import (
    Occurrence,
    ScopeKey,
    ScopeKind,
    Window,
    WindowKind,
    check_windows,
    scope_key,
)
from controlplane.windows.timeline import Expansion, Lane, ts, utc

__all__ = ["DEFAULT_HORIZON", "Decision", "Gate", "Reason", "Verdict", "span", "when"]

DEFAULT_HORIZON = timedelta(days=366)
EVERYTHING = scope_key(ScopeKind.EVERYTHING)


@dataclass(frozen=True)
class _Ask:
    """What one check needs: the lanes to consult, per touched unit."""

    policy: DeployPolicy
    member: str | None
    app: str | None
    host: str | None
    hosts: tuple[str, ...]
    freeze_keys: tuple[ScopeKey, ...]
    units: tuple[tuple[str, tuple[ScopeKey, ...]], ...]  # (label, keys of windows covering it)


class Gate:
    """Decide on changes against a fleet's windows; expansions are cached per window.

    Thread-safe. Build one per loaded fleet and keep it: the caches are what make it fast.
    Every query is held to ``limits`` (see ``bounds``); with a ``clock``, the moments asked
    about must also lie within ``limits.max_distance`` of its time.
    """

    def __init__(
        self,
        fleet: Fleet,
        windows: Iterable[Window],
        *,
        horizon: timedelta = DEFAULT_HORIZON,
        limits: Limits = DEFAULT_LIMITS,
        clock: Clock | None = None,
    ) -> None:
        self.fleet = fleet
        self.windows = check_windows(windows, fleet)
        self.horizon = horizon
        self.limits = limits
        self.clock = clock
        self._expansions = {w.name: Expansion(w) for w in self.windows}
        grouped: dict[tuple[WindowKind, ScopeKey], list[Expansion]] = defaultdict(list)
        for w in self.windows:
            grouped[(w.kind, w.scope.key)].append(self._expansions[w.name])
        self._lanes = {key: Lane(exps) for key, exps in grouped.items()}
        # Expansions grow lazily; one lock keeps threads (scheduler, API) from racing on them.
        self._lock = threading.RLock()
        self._asks: dict[tuple[str, str, str], _Ask] = {}  # the fleet is frozen: cache them
        self._placed: dict[str, set[tuple[str, str]]] = defaultdict(set)  # host -> (member, app)
        for inst in fleet.instances():
            self._placed[inst.host].add((inst.member, inst.app))

    # -- decisions --------------------------------------------------------------------------

    def check_member(
        self, member: str, app: str | None, now: datetime, *, emergency_reason: str | None = None
    ) -> Decision:
        """May a change to ``member`` (only ``app`` when given) start at ``now``?"""
        with self._lock:
            key = ("member", member, app or "")
            ask = self._asks.get(key) or self._asks.setdefault(key, self._member_ask(member, app))
            return self._decide(ask, now, emergency_reason)

    def check_host(
        self, host: str, now: datetime, *, emergency_reason: str | None = None
    ) -> Decision:
        """May host-level work (patching) on ``host`` start at ``now``?"""
        with self._lock:
            key = ("host", host, "")
            ask = self._asks.get(key) or self._asks.setdefault(key, self._host_ask(host))
            return self._decide(ask, now, emergency_reason)

    def _member_ask(self, member: str, app: str | None) -> _Ask:
        policy = self.fleet.member(member).deploy_policy
        if app is not None:
            self.fleet.stack_app(member, app)
        touched = sorted({(i.app, i.host) for i in self.fleet.instances(member, app)})
        member_key = scope_key(ScopeKind.MEMBER, member)
        freeze_keys: list[ScopeKey] = [EVERYTHING, member_key]
        units: list[tuple[str, tuple[ScopeKey, ...]]] = []
        for a, h in touched:
            app_key, host_key = scope_key(ScopeKind.APP, member, a), scope_key(ScopeKind.HOST, h)
            freeze_keys += [app_key, host_key]
            units.append((f"{a} on {h}", (EVERYTHING, member_key, app_key, host_key)))
        if not units:  # nothing placed yet: only the member (and app) scopes apply
            keys = [EVERYTHING, member_key]
            if app is not None:
                keys.append(scope_key(ScopeKind.APP, member, app))
            freeze_keys, units = list(keys), [(app or member, tuple(keys))]
        hosts = tuple(sorted({h for _, h in touched}))
        return _Ask(
            policy, member, app, None, hosts, tuple(dict.fromkeys(freeze_keys)), tuple(units)
        )

    def _host_ask(self, host: str) -> _Ask:
        self.fleet.host(host)
        host_key = scope_key(ScopeKind.HOST, host)
        freeze_keys: list[ScopeKey] = [EVERYTHING, host_key]
        for m, a in sorted(self._placed.get(host, ())):
            freeze_keys += [scope_key(ScopeKind.MEMBER, m), scope_key(ScopeKind.APP, m, a)]
        return _Ask(
            DeployPolicy.WINDOW_REQUIRED,
            None,
            None,
            host,
            (host,),
            tuple(dict.fromkeys(freeze_keys)),
            ((host, (EVERYTHING, host_key)),),
        )

    def _lanes_for(self, kind: WindowKind, keys: Iterable[ScopeKey]) -> list[Lane]:
        return [lane for k in keys if (lane := self._lanes.get((kind, k))) is not None]

    def _moment(self, value: datetime, name: str) -> datetime:
        """``value`` in UTC, within the limits; ``name`` is the parameter an error names."""
        value = utc_moment(value, name)
        if self.clock is not None:
            check_distance(value, utc_moment(self.clock(), "clock"), name, self.limits)
        return value

    @property
    def expanded(self) -> int:
        """How many occurrences this gate has taken from dateutil: the work it has done."""
        return sum(e.pulled for e in self._expansions.values())

    def _decide(self, ask: _Ask, now: datetime, emergency_reason: str | None) -> Decision:
        now = self._moment(now, "at")
        t = ts(now)
        need_window = ask.policy is DeployPolicy.WINDOW_REQUIRED
        freeze_lanes = self._lanes_for(WindowKind.FREEZE, ask.freeze_keys)
        unit_lanes = [
            (label, self._lanes_for(WindowKind.MAINTENANCE, keys)) for label, keys in ask.units
        ]
        freezes = _active(freeze_lanes, t)
        live: dict[int, list[int]] = {}  # each lane's active occurrences, computed once
        open_at: dict[tuple[int, int], Lane] = {}
        uncovered: list[str] = []
        past: list[tuple[Lane, int]] = []
        closes: list[float] = []
        for label, lanes in unit_lanes:
            usable_until = -math.inf
            unit_past: list[tuple[Lane, int]] = []
            for lane in lanes:
                key = id(lane)
                if key not in live:
                    live[key] = lane.active(t)
                for i in live[key]:
                    open_at[(key, i)] = lane
                    if lane.usable[i] > t:
                        usable_until = max(usable_until, lane.usable[i])
                    else:
                        unit_past.append((lane, i))
            if usable_until > t:
                closes.append(usable_until)
            elif need_window:
                uncovered.append(label)
                past += unit_past
        past_cutoff = [lane.occurrence(i) for lane, i in past]
        found = [lane.occurrence(i) for (_, i), lane in open_at.items()]
        windows = tuple(sorted(found, key=lambda o: (o.start, o.window.name)))
        allowed = not freezes and not uncovered
        if allowed:
            next_allowed: float | None = t
            nxt = [s for lane in freeze_lanes if (s := lane.next_start(t, t + self._h)) is not None]
            bounds = nxt + (closes if need_window else [])
            closes_at = utc(min(bounds)) if bounds else None
        else:
            next_allowed = self._search(t, freeze_lanes, [ls for _, ls in unit_lanes], need_window)
            closes_at = None
        nxt_dt = utc(next_allowed) if next_allowed is not None else None
        reason, message = self._explain(
            ask, freezes, windows, uncovered, past_cutoff, nxt_dt, closes_at
        )
        decision = Decision(
            verdict=Verdict.ALLOWED if allowed else Verdict.REFUSED,
            reason=reason,
            message=message,
            at=now,
            policy=ask.policy,
            member=ask.member,
            app=ask.app,
            host=ask.host,
            hosts=ask.hosts,
            freezes=tuple(freezes),
            windows=windows,
            next_allowed=nxt_dt,
            closes_at=closes_at,
        )
        return override(decision, emergency_reason)

    @property
    def _h(self) -> float:
        return self.horizon.total_seconds()

    def _search(
        self, t: float, freeze_lanes: list[Lane], unit_lanes: list[list[Lane]], need_window: bool
    ) -> float | None:
        """The earliest instant >= t at which the change would be allowed, within the horizon.

        Jumps only to instants before which nothing can be allowed: past the end of an
        active freeze, or to the latest of the next window starts of uncovered units.
        """
        limit = t + self._h
        while t < limit:
            freeze_end = max(
                (lane.ends[i] for lane in freeze_lanes for i in lane.active(t)), default=None
            )
            if freeze_end is not None:
                t = freeze_end
                continue
            jump: float | None = None
            for lanes in unit_lanes if need_window else []:
                if any(lane.usable[i] > t for lane in lanes for i in lane.active(t)):
                    continue
                starts = [s for lane in lanes if (s := lane.next_start(t, limit)) is not None]
                if not starts:
                    return None
                jump = max(jump if jump is not None else -math.inf, min(starts))
            if jump is None:
                return t
            t = jump
        return None

    def _explain(
        self,
        ask: _Ask,
        freezes: list[Occurrence],
        windows: tuple[Occurrence, ...],
        uncovered: list[str],
        past_cutoff: list[Occurrence],
        next_allowed: datetime | None,
        closes_at: datetime | None,
    ) -> tuple[Reason, str]:
        zone = self.fleet_zone
        subject = f"host {ask.host}" if ask.host else "/".join(filter(None, (ask.member, ask.app)))
        nxt = (
            f"; next opening {when(next_allowed, zone)}"
            if next_allowed
            else f"; no opening within {self.horizon.days} days"
        )
        if freezes:
            names = few([f"{o.window.name} ({o.window.scope}, {span(o)})" for o in freezes])
            return Reason.FREEZE, f"{subject}: refused, frozen by {names}{nxt}"
        if uncovered:
            if past_cutoff:
                o = past_cutoff[0]
                return Reason.CUTOFF, (
                    f"{subject}: refused, window {o.window.name} is past its cutoff "
                    f"(no new work after {when(o.cutoff_at, o.window.zone)}){nxt}"
                )
            what = few(uncovered)
            return Reason.NO_WINDOW, (
                f"{subject}: refused, {ask.policy.value} and no maintenance window is open "
                f"for {what}{nxt}"
            )
        until = f" until {when(closes_at, zone)}" if closes_at else ""
        if ask.policy is DeployPolicy.WINDOW_REQUIRED:
            names = few(list(dict.fromkeys(o.window.name for o in windows)))
            return Reason.IN_WINDOW, f"{subject}: allowed, inside maintenance window {names}{until}"
        policy = ask.policy.value
        return Reason.NO_FREEZE, f"{subject}: allowed, no freeze applies ({policy}){until}"

    @property
    def fleet_zone(self) -> ZoneInfo:
        return ZoneInfo(self.fleet.timezone)

    def warm(self, until: datetime) -> None:
        """Expand every lane around ``until`` now (say at service start), not on a decision."""
        hi = ts(self._moment(until, "until"))
        with self._lock:
            for lane in self._lanes.values():
                lane.ensure(hi)

    # -- occurrences ------------------------------------------------------------------------

    def window(self, name: str) -> Window:
        try:
            return self._expansions[name].window
        except KeyError:
            raise InvalidInput(f"unknown window {name!r}") from None

    def windows_for_member(self, member: str, app: str | None = None) -> tuple[Window, ...]:
        """Every window that can gate a change to ``member`` (and ``app``)."""
        ask = self._member_ask(member, app)
        keys = set(ask.freeze_keys) | {k for _, ks in ask.units for k in ks}
        return tuple(w for w in self.windows if w.scope.key in keys)

    def windows_for_host(self, host: str) -> tuple[Window, ...]:
        """Every window that can gate host-level work on ``host``."""
        ask = self._host_ask(host)
        keys = set(ask.freeze_keys) | {k for _, ks in ask.units for k in ks}
        return tuple(w for w in self.windows if w.scope.key in keys)

    def placed_on(self, host: str) -> set[tuple[str, str]]:
        """(member, app) pairs with an instance on ``host``."""
        return set(self._placed.get(host, ()))

    def occurrences_between(
        self, start: datetime, end: datetime, windows: Iterable[Window] | None = None
    ) -> list[Occurrence]:
        """Occurrences overlapping [start, end), sorted by start then window name.

        ``start`` and ``end`` are the parameters ``from`` and ``to`` of the edges; the range
        and the number of occurrences in it are held to the gate's limits.
        """
        start, end = self._moment(start, "from"), self._moment(end, "to")
        check_span(start, end, self.limits)
        lo, hi = ts(start), ts(end)
        chosen = sorted(self.windows if windows is None else windows, key=lambda w: w.name)
        starts: list[float] = []
        owners: list[int] = []
        with self._lock:
            for k, w in enumerate(chosen):
                found = self._expansion(w).overlapping(lo, hi)
                starts += found
                owners += [k] * len(found)
                check_found(len(starts), self.limits)
        # A stable sort of indices by start keeps the name order for equal starts.
        order = sorted(range(len(starts)), key=starts.__getitem__)
        return [Occurrence(chosen[owners[i]], utc(starts[i])) for i in order]

    def next_occurrences(
        self, window: str | Window, after: datetime, count: int = 1
    ) -> list[Occurrence]:
        """The next ``count`` occurrences of one window starting at or after ``after``."""
        w = self.window(window) if isinstance(window, str) else window
        check_count(count, self.limits)
        at = ts(self._moment(after, "after"))
        with self._lock:
            e = self._expansion(w)
            return [e.occurrence(s) for s in e.after(at, count)]

    def _expansion(self, w: Window) -> Expansion:
        e = self._expansions.get(w.name)
        if e is None or e.window != w:
            raise InvalidInput(f"window {w.name!r} is not one of this gate's windows")
        return e


def _active(lanes: list[Lane], t: float) -> list[Occurrence]:
    out = [lane.occurrence(i) for lane in lanes for i in lane.active(t)]
    out.sort(key=lambda o: (o.start, o.window.name))
    return out
