"""Uptime operations for every edge: availability per member and app, with SLA figures.

The SLA figure leaves out probes taken inside maintenance windows; budget and burn rate are
against the member's SLO.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from controlplane.access.policy import Action, Principal, authorize
from controlplane.clock import utc_now
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.uptime.availability import Period
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
