"""``/uptime``: availability per member and app over 24 hours, 7 days and 30 days.

A table gives every figure the API gives (raw availability, the SLA figure that leaves out
maintenance windows, the SLO, the error budget left); per app a chart draws the chosen
period (``window``: 24h, 7d or 30d) as bars of a few hours each, with the maintenance
windows hatched behind them, and the chart's numbers are in a table under it. An engineer
sees only their members, as with the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Query
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from controlplane.access.policy import Action
from controlplane.clock import utc_now
from controlplane.fleet.operations import show_fleet
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.uptime import operations as uptime_ops
from controlplane.uptime.availability import Counts, Period, first_hour, floor_hour
from controlplane.web.framework import Page, needs, page_router, render
from controlplane.web.overview import sla_state
from controlplane.web.svg import Bucket, availability_chart

router = page_router()

HOUR = timedelta(hours=1)
PERIODS = (Period.DAY, Period.WEEK, Period.MONTH)
# Hours per bar: 24 bars a day, 42 a week, 60 a month.
BAR_HOURS = {Period.DAY: 1, Period.WEEK: 4, Period.MONTH: 12}
LABELS = {Period.DAY: "24 hours", Period.WEEK: "7 days", Period.MONTH: "30 days"}


# -- the pure part ---------------------------------------------------------------------------


def chart_span(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The whole clock hours a period's figures count: up to the end of the current hour."""
    return first_hour(period, now), floor_hour(now) + HOUR


def buckets(
    hours: Mapping[datetime, Counts], start: datetime, end: datetime, size: int
) -> list[Bucket]:
    """Bars of ``size`` hours from ``start`` to ``end``: raw availability (maintenance
    included), the SLA figure (maintenance left out; None when every probe was in one) and
    the number of probes."""
    out: list[Bucket] = []
    at = start
    while at < end:
        stop = min(at + size * HOUR, end)
        total = Counts()
        hour = at
        while hour < stop:
            total = total + hours.get(hour, Counts())
            hour += HOUR
        out.append(
            Bucket(
                at, stop, total.availability, total.total, total.sla_availability, total.in_window
            )
        )
        at = stop
    return out


def percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def budget_text(row: AvailabilityOut | None) -> str:
    if row is None or row.error_budget_remaining is None:
        return "—"
    return f"{row.error_budget_remaining * 100:.0f} %"


@dataclass
class AppChart:
    member: str
    app: str
    slo: float
    bars: list[Bucket]
    maintenance: tuple[tuple[datetime, datetime], ...]
    svg: Markup


@dataclass
class AppRow:
    member: str
    app: str
    slo: float
    figures: dict[str, AvailabilityOut | None]  # per period value (24h, 7d, 30d)


def rows_by_app(rows: Sequence[AvailabilityOut]) -> list[AppRow]:
    """The operation's rows (one per member, app and period) as one row per app."""
    out: dict[tuple[str, str], AppRow] = {}
    for r in rows:
        row = out.setdefault((r.member, r.app), AppRow(r.member, r.app, r.slo, {}))
        row.figures[r.window] = r
    return list(out.values())


# -- the page --------------------------------------------------------------------------------


@router.get("/uptime")
def uptime_page(
    page: Annotated[Page, needs(Action.UPTIME_READ)],
    window: Annotated[Literal["24h", "7d", "30d"], Query()] = "7d",
    member: Annotated[str | None, Query(max_length=63)] = None,
) -> HTMLResponse:
    ctx, principal = page.ctx, page.principal
    zone = ZoneInfo(ctx.settings.timezone)
    now = utc_now()
    member = member or None
    period = Period.parse(window)
    rows = [
        r
        for r in uptime_ops.availability(ctx, principal, member, now=now)
        if r.window in {p.value for p in PERIODS}
    ]
    start, end = chart_span(period, now)
    charts: list[AppChart] = []
    for h in uptime_ops.history(ctx, principal, start, end, member):
        bars = buckets(h.hours, start, end, BAR_HOURS[period])
        svg = availability_chart(
            bars,
            h.maintenance,
            start=start,
            end=end,
            zone=zone,
            slo=h.slo,
            key=f"{h.member}-{h.app}-{period.value}",
            title=f"{h.member} {h.app}: availability per {BAR_HOURS[period]} h, last "
            f"{LABELS[period]}",
        )
        charts.append(AppChart(h.member, h.app, h.slo, bars, h.maintenance, svg))
    names = {m.member: m.name for m in show_fleet(ctx, principal).members}
    context: dict[str, Any] = {
        "title": "Uptime",
        "period": period,
        "periods": [(p.value, LABELS[p]) for p in PERIODS],
        "label": LABELS[period],
        "bar_hours": BAR_HOURS[period],
        "rows": rows_by_app(rows),
        "columns": [p.value for p in PERIODS],
        "charts": charts,
        "names": names,
        "member": member or "",
        "percent": percent,
        "budget": budget_text,
        "slo_state": sla_state,
        "zone": zone,
        "now": now,
    }
    return render(page, "web/uptime.html", context)
