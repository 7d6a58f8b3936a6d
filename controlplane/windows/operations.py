"""Windows operations for every edge: occurrences, gate checks, conflicts and the .ics feed.

Times given without an offset are local time in the configured zone (``fold=0`` on the
ambiguous fall-back hour, the documented DST choice). ``now`` defaults to the clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from controlplane.access.policy import Action, Principal, authorize
from controlplane.clock import local_as_utc, utc_now
from controlplane.errors import HostNotFound, InvalidInput
from controlplane.schemas.windows import (
    ConflictOut,
    ConflictsOut,
    DecisionOut,
    OccurrenceOut,
    OccurrencesOut,
)
from controlplane.windows.calendar import member_calendar
from controlplane.windows.conflicts import Conflict, find_conflicts
from controlplane.windows.rules import utc_text

if TYPE_CHECKING:
    from controlplane.app import Context

LIST_DAYS = 30
CONFLICT_DAYS = 365


def parse_time(text: str | None, param: str) -> datetime | None:
    """``None`` for "now", else a date (local midnight) or an ISO date-time; the result is
    naive when the text had no offset (the operations read it as local time)."""
    if text is None or text == "now":
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time())
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{param}: {text!r} is not a time like 2026-03-29T02:30") from None


def _zone(ctx: Context) -> ZoneInfo:
    return ZoneInfo(ctx.settings.timezone)


def _aware(value: datetime | None, zone: ZoneInfo, now: datetime) -> datetime:
    return now if value is None else local_as_utc(value, zone)


def _range(
    ctx: Context, start: datetime | None, end: datetime | None, days: int, now: datetime | None
) -> tuple[datetime, datetime]:
    zone = _zone(ctx)
    lo = _aware(start, zone, now or utc_now())
    hi = _aware(end, zone, lo) if end is not None else lo + timedelta(days=days)
    if hi <= lo:
        raise InvalidInput("to: must be after from")
    return lo, hi


def list_occurrences(
    ctx: Context,
    principal: Principal,
    member: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    now: datetime | None = None,
) -> OccurrencesOut:
    """Window and freeze occurrences overlapping [start, end) (default: the next 30 days);
    with ``member``, only those that gate its changes."""
    authorize(principal, Action.WINDOWS_READ, member)
    lo, hi = _range(ctx, start, end, LIST_DAYS, now)
    gate = ctx.gate
    if member:
        chosen = gate.windows_for_member(member)
    elif principal.scoped:  # only what gates their members: no other member's freezes
        mine = {w.name: w for m in sorted(principal.members) for w in gate.windows_for_member(m)}
        chosen = tuple(mine.values())
    else:
        chosen = gate.windows
    found = gate.occurrences_between(lo, hi, chosen)
    return OccurrencesOut.model_validate(
        {
            "from": utc_text(lo),
            "to": utc_text(hi),
            "member": member,
            "occurrences": [OccurrenceOut.of(o) for o in found],
        }
    )


def check_member(
    ctx: Context,
    principal: Principal,
    member: str,
    app: str | None = None,
    at: datetime | None = None,
    *,
    now: datetime | None = None,
) -> DecisionOut:
    """Whether a change to the member (only ``app`` when given) may start at ``at``."""
    authorize(principal, Action.WINDOWS_READ, member)
    when = _aware(at, _zone(ctx), now or utc_now())
    return DecisionOut.of(ctx.gate.check_member(member, app, when))


def check_host(
    ctx: Context,
    principal: Principal,
    host: str,
    at: datetime | None = None,
    *,
    now: datetime | None = None,
) -> DecisionOut:
    """Whether host work (patching) on ``host`` may start at ``at``."""
    authorize(principal, Action.WINDOWS_READ)
    ctx.fleet.host(host)
    if principal.scoped and not any(principal.sees(m) for m, _ in ctx.gate.placed_on(host)):
        # Not one of their members' hosts: as if it did not exist.
        raise HostNotFound(f"unknown host {host!r}")
    when = _aware(at, _zone(ctx), now or utc_now())
    return DecisionOut.of(ctx.gate.check_host(host, when))


def conflicts(
    ctx: Context,
    principal: Principal,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    now: datetime | None = None,
) -> ConflictsOut:
    """Windows lost to freezes on shared hosts, and overlapping host windows (default: the
    next 365 days)."""
    authorize(principal, Action.WINDOWS_READ)
    lo, hi = _range(ctx, start, end, CONFLICT_DAYS, now)
    found = find_conflicts(ctx.gate, lo, hi)
    if principal.scoped:
        found = [c for c in (_theirs(principal, c) for c in found) if c is not None]
    return ConflictsOut.model_validate(
        {"from": utc_text(lo), "to": utc_text(hi), "conflicts": [ConflictOut.of(c) for c in found]}
    )


def _theirs(principal: Principal, conflict: Conflict) -> Conflict | None:
    """The conflict as a member-scoped caller sees it: only when it puts one of their
    members at risk, and without naming other members or their freezes."""
    shared = tuple(s for s in conflict.shared if principal.sees(s.split("/", 1)[0]))
    others = tuple(
        o
        for o in conflict.others
        if o.window.scope.member is None or principal.sees(o.window.scope.member)
    )
    if not shared or not others:
        return None
    return replace(conflict, shared=shared, others=others)


def ics(
    ctx: Context,
    principal: Principal,
    member: str,
    app: str | None = None,
    *,
    now: datetime | None = None,
) -> bytes:
    """The member's windows and freezes as an iCalendar (RFC 5545) feed."""
    authorize(principal, Action.WINDOWS_READ, member)
    return member_calendar(ctx.gate, member, now or utc_now(), app)


def scope_text(scope: dict[str, str] | str) -> str:
    """An occurrence's scope (as the schemas carry it) in words: "host lab-1",
    "amsterdam/uitkering", "member amsterdam"."""
    if isinstance(scope, str):
        return scope
    if "host" in scope:
        return f"host {scope['host']}"
    if "app" in scope:
        return f"{scope.get('member')}/{scope['app']}"
    return f"member {scope.get('member')}"
