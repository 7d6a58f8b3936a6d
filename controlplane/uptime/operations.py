"""Uptime operations for every edge: availability per member and app, with SLA figures.

The SLA figure leaves out probes taken inside maintenance windows; budget and burn rate are
against the member's SLO.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from controlplane.access.policy import Action, Principal, authorize
from controlplane.clock import utc_now
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.uptime.availability import Counts, Period
from controlplane.uptime.job import ProbeJob
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.summary import UptimeReader, availabilities
from controlplane.uptime.windows import WindowCalendar, fleet_calendar

if TYPE_CHECKING:
    from controlplane.app import Context


def calendar(ctx: Context) -> WindowCalendar:
    """The fleet's maintenance windows, as probes and availability figures see them."""
    return fleet_calendar(ctx.settings.resolved_fleet, ctx.fleet)


def availability(
    ctx: Context,
    principal: Principal,
    member: str | None = None,
    window: str | None = None,
    *,
    probe: bool = False,
    now: datetime | None = None,
) -> list[AvailabilityOut]:
    """Availability rows per member, app and period (``window``: 1h, 24h, 7d or 30d;
    default all four), for the members the caller sees. ``probe`` first probes every
    instance once and stores the samples (after the arguments are checked)."""
    authorize(principal, Action.UPTIME_READ, member)
    periods = (Period.parse(window),) if window is not None else tuple(Period)
    model = ctx.fleet
    if member is not None:
        model.member(member)
    store = ProbeStore(ctx.engine)
    if probe:
        timeout = ctx.settings.probe_timeout_seconds
        ProbeJob(model, store, timeout=timeout, calendar=calendar(ctx)).run()
    counts = UptimeReader(store).counts(now or utc_now())
    rows = availabilities(model, counts, periods, member=member)
    return [AvailabilityOut.of(a) for a in rows if principal.sees(a.member)]


@dataclass(frozen=True)
class AppHistory:
    """One member's app over a stretch of time: probe counts per clock hour (hours without
    probes left out) and the maintenance windows that covered any of its instances."""

    member: str
    app: str
    slo: float
    hours: dict[datetime, Counts]
    maintenance: tuple[tuple[datetime, datetime], ...]


def history(
    ctx: Context,
    principal: Principal,
    since: datetime,
    until: datetime,
    member: str | None = None,
) -> list[AppHistory]:
    """Hourly probe counts and maintenance windows per member and app in [since, until),
    for the members the caller sees (what the uptime page draws)."""
    from controlplane.windows.rules import WindowKind

    authorize(principal, Action.UPTIME_READ, member)
    model = ctx.fleet
    if member is not None:
        model.member(member)
    series = ProbeStore(ctx.engine).hourly_series(since, until, member)
    gate = ctx.gate
    out: list[AppHistory] = []
    for m in model.members:
        if (member is not None and m.slug != member) or not principal.sees(m.slug):
            continue
        for stack_app in model.stack(m.slug).apps:
            windows = [
                w
                for w in gate.windows_for_member(m.slug, stack_app.app)
                if w.kind is WindowKind.MAINTENANCE
            ]
            spans = tuple((o.start, o.end) for o in gate.occurrences_between(since, until, windows))
            hours = series.get((m.slug, stack_app.app), {})
            out.append(AppHistory(m.slug, stack_app.app, m.slo, hours, spans))
    return out
