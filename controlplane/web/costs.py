"""``/costs``: a month's shared costs split between members, what sharing saves, the trend.

The board's page (``/`` sends the board here). ``period`` picks the month (default: the
current one, or the latest before it with cost figures); the downloads are the board's
report as HTML, PDF and CSV for that month and its quarter, served to the signed-in
session by the same operation as the API's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Path, Query
from fastapi.responses import HTMLResponse, Response

from controlplane.access.policy import Action
from controlplane.api.costs import attachment
from controlplane.clock import utc_now
from controlplane.costs import operations as costs_ops
from controlplane.costs.periods import Period
from controlplane.costs.report import money as report_money
from controlplane.errors import InvalidInput
from controlplane.schemas.costs import AllocationOut
from controlplane.web.framework import Page, needs, page_router, render
from controlplane.web.svg import stacked_bars

router = page_router()

LOOK_BACK = 12  # months tried for the default period when this one has no figures yet


# -- the pure part ---------------------------------------------------------------------------


def money(value: str | Decimal | None) -> str:
    """``€ 12,345.67`` with a real minus sign, as in the board's report; an em dash for no
    value. The API's figures arrive as decimal strings."""
    return report_money(None if value is None else Decimal(value), symbol=True)


def ratio(part: str | Decimal, whole: str | Decimal) -> str:
    """``23.4 %`` of ``whole``; an em dash when it is zero."""
    w = Decimal(whole)
    return "—" if not w else f"{Decimal(part) / w * 100:.1f} %"


def quarter_of(period: str) -> str:
    month = Period.parse(period)
    return f"{month.year}-Q{(month.month + 2) // 3}"


@dataclass(frozen=True)
class Totals:
    """The month's figures the page leads with."""

    total: Decimal
    cooperative: Decimal
    credits: Decimal
    standalone: Decimal
    market: Decimal
    gross: Decimal

    @property
    def saving_standalone(self) -> Decimal:
        return self.standalone - self.gross

    @property
    def saving_market(self) -> Decimal:
        return self.market - self.gross


def totals(a: AllocationOut) -> Totals:
    def add(field: str) -> Decimal:
        return sum((Decimal(getattr(m, field)) for m in a.members), Decimal(0))

    return Totals(
        Decimal(a.total),
        Decimal(a.cooperative),
        Decimal(a.credits),
        add("standalone"),
        add("market"),
        add("gross"),
    )


def trend_series(
    months: list[AllocationOut],
) -> tuple[list[str], list[tuple[str, list[Decimal | None]]]]:
    """Month labels and, per member, its share (before credits) in each month."""
    labels = [Period.parse(a.period).short for a in months]
    members: dict[str, str] = {}
    for a in months:
        for m in a.members:
            members.setdefault(m.member, m.name.split(",")[0])
    series: list[tuple[str, list[Decimal | None]]] = []
    for slug, name in members.items():
        values: list[Decimal | None] = []
        for a in months:
            bill = next((m for m in a.members if m.member == slug), None)
            values.append(None if bill is None else Decimal(bill.gross))
        series.append((name, values))
    if any(Decimal(a.cooperative) for a in months):
        series.append(("Idle capacity", [Decimal(a.cooperative) for a in months]))
    return labels, series


# -- pages -----------------------------------------------------------------------------------


def _allocation(page: Page, period: str | None, now: datetime) -> tuple[AllocationOut, str]:
    """The chosen month's allocation, or by default the latest month with figures; the
    second value is a notice when the default had to fall back."""
    if period:
        return costs_ops.allocate(page.ctx, page.principal, period, now=now), ""
    zone = ZoneInfo(page.ctx.settings.timezone)
    local = now.astimezone(zone)
    current = Period(local.year, local.month)
    for back in range(LOOK_BACK + 1):
        month = current.shift(-back)
        try:
            found = costs_ops.allocate(page.ctx, page.principal, str(month), now=now)
        except InvalidInput:
            continue
        notice = "" if back == 0 else f"No cost figures for {current.title} yet."
        return found, notice
    # Nothing recent: let the operation say why for the current month.
    return costs_ops.allocate(page.ctx, page.principal, str(current), now=now), ""


@router.get("/costs")
def costs_page(
    page: Annotated[Page, needs(Action.COSTS_READ)],
    period: Annotated[str | None, Query(max_length=16)] = None,
) -> HTMLResponse:
    now = utc_now()
    allocation, notice = _allocation(page, period or None, now)
    shown = allocation.period
    months = costs_ops.trend(page.ctx, page.principal, shown, now=now)
    labels, series = trend_series(months)
    chart = stacked_bars(
        labels,
        series,
        title="Monthly cost per member (share before credits) and idle capacity",
        key=f"trend-{shown}",
    )
    pools = [(p.pool, p.name) for p in allocation.pools]
    shares = {m.member: {ln.pool: ln.amount for ln in m.lines} for m in allocation.members}
    context: dict[str, Any] = {
        "title": f"Costs, {Period.parse(shown).title}",
        "a": allocation,
        "period": shown,
        "period_title": Period.parse(shown).title,
        "quarter": quarter_of(shown),
        "previous": str(Period.parse(shown).shift(-1)),
        "next": str(Period.parse(shown).shift(1)),
        "notice": notice,
        "pools": pools,
        "shares": shares,
        "pool_amounts": {p.pool: p.amount for p in allocation.pools},
        "sums": totals(allocation),
        "months": months,
        "trend_labels": labels,
        "trend_series": series,
        "chart": chart,
        "money": money,
        "ratio": ratio,
    }
    return render(page, "web/costs.html", context)


@router.get("/costs/{period}/report.{fmt}")
def costs_download(
    period: Annotated[str, Path(max_length=16)],
    fmt: Literal["html", "pdf", "csv"],
    page: Annotated[Page, needs(Action.COSTS_READ)],
) -> Response:
    """The board's report for a month (2026-10) or a quarter (2026-Q4), as a file."""
    rendered = costs_ops.report(page.ctx, page.principal, period, fmt)
    return Response(
        rendered.content,
        media_type=rendered.content_type,
        headers={
            "Content-Disposition": attachment(rendered.filename),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
