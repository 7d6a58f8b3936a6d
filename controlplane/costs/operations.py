"""Cost operations for every edge: a month's allocation, and the board's report as bytes.

Everything the caller gave is checked before the store is touched, so bad input writes
nothing (opening the ledger records the fleet's reservations when none are recorded yet).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.access.policy import Action, Principal, authorize
from controlplane.clock import utc_now
from controlplane.costs.history import ReservationHistory
from controlplane.costs.ledger import Ledger, open_ledger
from controlplane.costs.loader import load_costs
from controlplane.costs.periods import Period, PeriodRange
from controlplane.costs.report import ReportFormat
from controlplane.errors import InvalidInput
from controlplane.schemas.costs import AllocationOut

if TYPE_CHECKING:
    from controlplane.app import Context

CONTENT_TYPES = {
    ReportFormat.HTML: "text/html; charset=utf-8",
    ReportFormat.PDF: "application/pdf",
    ReportFormat.CSV: "text/csv; charset=utf-8",
}


@dataclass(frozen=True)
class RenderedReport:
    """The board's report in one format, ready to write to a file or send."""

    content: bytes
    format: ReportFormat
    title: str

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def filename(self) -> str:
        return f"costs-{self.title.replace(' ', '-')}.{self.format.value}"


def parse_month(text: str) -> Period:
    try:
        return Period.parse(text)
    except InvalidInput as exc:
        raise InvalidInput(f"period: {exc}") from None


def parse_range(text: str) -> PeriodRange:
    try:
        return PeriodRange.parse(text)
    except InvalidInput as exc:
        raise InvalidInput(f"period: {exc}") from None


def parse_format(text: str) -> ReportFormat:
    try:
        return ReportFormat(text.lower())
    except ValueError:
        raise InvalidInput(f"format: {text!r} is not html, pdf or csv") from None


def _ledger(ctx: Context, periods: tuple[Period, ...], now: datetime) -> Ledger:
    book = load_costs(ctx.settings.resolved_fleet, ctx.fleet)
    for period in periods:
        book.costs(period)
    return open_ledger(ctx.fleet, book, ReservationHistory(ctx.engine), now)


def allocate(
    ctx: Context, principal: Principal, period: str, *, now: datetime | None = None
) -> AllocationOut:
    """Split a month's cost pools between members, with each member's bill and savings."""
    from controlplane.costs.export import allocation_data

    authorize(principal, Action.COSTS_READ)
    month = parse_month(period)
    ledger = _ledger(ctx, (month,), now or utc_now())
    allocation = ledger.allocation(month)
    return AllocationOut.model_validate(allocation_data(allocation, ledger.names(), ledger.zone))


def trend(
    ctx: Context, principal: Principal, period: str, *, now: datetime | None = None
) -> list[AllocationOut]:
    """The allocations of the twelve months up to ``period`` that can be allocated, oldest
    first (months without cost figures are left out, as in the report's trend)."""
    from controlplane.costs.export import allocation_data

    authorize(principal, Action.COSTS_READ)
    month = parse_month(period)
    ledger = _ledger(ctx, (month,), now or utc_now())
    names = ledger.names()
    return [
        AllocationOut.model_validate(allocation_data(a, names, ledger.zone))
        for _, a in ledger.trend(month)
    ]


def report(
    ctx: Context,
    principal: Principal,
    period: str,
    format: str,
    *,
    now: datetime | None = None,
) -> RenderedReport:
    """The board's report for a month or quarter as HTML, PDF or FOCUS-style CSV."""
    from controlplane.costs.export import render_csv
    from controlplane.costs.report import build_report, render_html, render_pdf

    authorize(principal, Action.COSTS_READ)
    rng = parse_range(period)
    kind = parse_format(format)
    ledger = _ledger(ctx, rng.months, now or utc_now())
    if kind is ReportFormat.CSV:
        text = render_csv(ledger.allocations(rng.months), ledger.names(), ledger.zone)
        return RenderedReport(text.encode("utf-8"), kind, rng.title)
    built = build_report(ledger, rng, now or utc_now())
    if kind is ReportFormat.HTML:
        return RenderedReport(render_html(built).encode("utf-8"), kind, rng.title)
    with tempfile.TemporaryDirectory(prefix="cp-report-") as tmp:
        target = Path(tmp) / "report.pdf"
        render_pdf(built, target)
        return RenderedReport(target.read_bytes(), kind, rng.title)
