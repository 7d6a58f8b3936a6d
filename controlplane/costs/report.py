"""The board's report for one month or a quarter, as HTML or PDF (WeasyPrint).

``build_report`` gathers the figures (pure, from allocations); the HTML and the PDF come from
the same Jinja2 template under ``templates/report/``. The CSV is in ``export.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path

from controlplane.costs import charts
from controlplane.costs.allocate import ZERO, Allocation
from controlplane.costs.export import COOPERATIVE_NAME
from controlplane.costs.ledger import Ledger
from controlplane.costs.metering import MILLI_HOUR
from controlplane.costs.model import (
    CREDIT,
    AllocationKey,
    IdlePolicy,
    Pool,
    StandaloneBasis,
)
from controlplane.costs.periods import Period, PeriodRange
from controlplane.settings import TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR / "report"


class ReportFormat(Enum):
    HTML = "html"
    PDF = "pdf"
    CSV = "csv"


# -- figures ---------------------------------------------------------------------------------


def short_name(name: str) -> str:
    return name.split(",")[0]


def _ratio(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if not whole else part / whole


@dataclass(frozen=True)
class MemberSummary:
    """One member over the report's months."""

    member: str
    name: str
    shares: tuple[Decimal, ...]  # per pool, in pool order
    credits: Decimal
    standalone: Decimal
    market: Decimal
    caseload: int | None  # recipient-months: each month's recipients, added up
    held: tuple[int, int, int]  # milli-unit-seconds of vCPU, RAM GiB, disk GiB
    months: int = 1

    @property
    def short(self) -> str:
        """The name up to its first comma: "Gemeente Amsterdam"."""
        return short_name(self.name)

    @property
    def recipients(self) -> Decimal | None:
        """Benefit recipients, a monthly average over the report's months."""
        return None if self.caseload is None else Decimal(self.caseload) / self.months

    @property
    def gross(self) -> Decimal:
        return sum(self.shares, ZERO)

    @property
    def net(self) -> Decimal:
        return self.gross - self.credits

    @property
    def saving_standalone(self) -> Decimal:
        return self.standalone - self.gross

    @property
    def saving_market(self) -> Decimal:
        return self.market - self.gross

    @property
    def saving_standalone_ratio(self) -> Decimal | None:
        return _ratio(self.saving_standalone, self.standalone)

    @property
    def saving_market_ratio(self) -> Decimal | None:
        return _ratio(self.saving_market, self.market)

    @property
    def vcpu_hours(self) -> Decimal:
        return Decimal(self.held[0]) / MILLI_HOUR

    @property
    def ram_hours(self) -> Decimal:
        return Decimal(self.held[1]) / MILLI_HOUR

    @property
    def per_recipient(self) -> Decimal | None:
        return None if not self.caseload else self.gross / self.caseload

    @property
    def per_vcpu_hour(self) -> Decimal | None:
        if not self.held[0]:
            return None
        return self.gross / (Decimal(self.held[0]) / MILLI_HOUR)


@dataclass(frozen=True)
class PoolSummary:
    pool: Pool
    amount: Decimal
    cooperative: Decimal

    @property
    def key_text(self) -> str:
        return self.pool.key.describe

    @property
    def idle_text(self) -> str:
        if self.pool.key is not AllocationKey.RESERVED:
            return "—"
        if self.pool.idle is IdlePolicy.COOPERATIVE:
            return "shown as the cooperative's line"
        return "shared in proportion to reservations"

    @property
    def standalone_text(self) -> str:
        return {
            StandaloneBasis.HOSTS: "own dedicated hosts instead",
            StandaloneBasis.FULL: "the whole pool",
            StandaloneBasis.SAME: "the same as its share",
        }[self.pool.standalone]


@dataclass(frozen=True)
class CreditSummary:
    member: str
    name: str
    description: str
    pool: str | None
    amount: Decimal

    @property
    def short(self) -> str:
        return short_name(self.name)


@dataclass(frozen=True)
class Summary:
    """Allocations of one or more months, added up."""

    months: tuple[Period, ...]
    hours: Decimal
    pools: tuple[PoolSummary, ...]
    members: tuple[MemberSummary, ...]
    credit_lines: tuple[CreditSummary, ...]

    @property
    def total(self) -> Decimal:
        return sum((p.amount for p in self.pools), ZERO)

    @property
    def cooperative(self) -> Decimal:
        return sum((p.cooperative for p in self.pools), ZERO)

    @property
    def shared(self) -> Decimal:
        return self.total - self.cooperative

    @property
    def credits(self) -> Decimal:
        return sum((m.credits for m in self.members), ZERO)

    @property
    def standalone(self) -> Decimal:
        return sum((m.standalone for m in self.members), ZERO)

    @property
    def market(self) -> Decimal:
        return sum((m.market for m in self.members), ZERO)

    @property
    def saving_standalone(self) -> Decimal:
        return self.standalone - self.shared

    @property
    def saving_market(self) -> Decimal:
        return self.market - self.shared

    def share_ratio(self, member: MemberSummary) -> Decimal | None:
        return _ratio(member.gross, self.total)

    @property
    def shows_cooperative(self) -> bool:
        return any(p.pool.idle is IdlePolicy.COOPERATIVE for p in self.pools)


def summarise(allocations: Sequence[Allocation], names: Mapping[str, str]) -> Summary:
    """Add up the months of a report (one for a month, three for a quarter)."""
    first = allocations[0]
    pools = tuple(
        PoolSummary(
            split.pool,
            sum((a.pools[i].amount for a in allocations), ZERO),
            sum((a.pools[i].cooperative for a in allocations), ZERO),
        )
        for i, split in enumerate(first.pools)
    )
    members = []
    credit_lines: dict[tuple[str, str, str | None], Decimal] = {}
    for j, bill in enumerate(first.members):
        bills = [a.members[j] for a in allocations]
        caseloads = [b.caseload for b in bills]
        members.append(
            MemberSummary(
                member=bill.member,
                name=names.get(bill.member, bill.member),
                shares=tuple(sum((b.share(p.pool.slug) for b in bills), ZERO) for p in pools),
                credits=sum((b.credits for b in bills), ZERO),
                standalone=sum((b.standalone for b in bills), ZERO),
                market=sum((b.market for b in bills), ZERO),
                caseload=None if None in caseloads else sum(c or 0 for c in caseloads),
                held=(
                    sum(b.usage.held.vcpu for b in bills),
                    sum(b.usage.held.ram_gib for b in bills),
                    sum(b.usage.held.disk_gib for b in bills),
                ),
                months=len(bills),
            )
        )
        for b in bills:
            for line in b.lines:
                if line.pool == CREDIT:
                    key = (b.member, line.label, line.against)
                    credit_lines[key] = credit_lines.get(key, ZERO) - line.amount
    return Summary(
        months=tuple(a.period for a in allocations),
        hours=sum((a.hours for a in allocations), Decimal(0)),
        pools=pools,
        members=tuple(members),
        credit_lines=tuple(
            CreditSummary(m, names.get(m, m), d, p, amount)
            for (m, d, p), amount in credit_lines.items()
        ),
    )


@dataclass(frozen=True)
class TrendRow:
    label: str
    values: tuple[Decimal | None, ...]


@dataclass(frozen=True)
class Report:
    """Everything the template shows."""

    datacenter: str
    range: PeriodRange
    summary: Summary
    trend_months: tuple[Period, ...]
    trend_rows: tuple[TrendRow, ...]
    generated_at: datetime
    market_source: str
    reference_host: str
    charts: Mapping[str, str]

    @property
    def title(self) -> str:
        return f"Shared datacenter costs, {self.range.title}"


def build_report(ledger: Ledger, rng: PeriodRange, generated_at: datetime) -> Report:
    """Allocate the report's months and the 12-month trend, and draw the charts."""
    names = ledger.names()
    summary = summarise(ledger.allocations(rng.months), names)
    trend = dict(ledger.trend(rng.last))
    months = tuple(rng.last.shift(-i) for i in reversed(range(12)))
    rows = [
        TrendRow(
            member.name,
            tuple(trend[p].members[j].gross if p in trend else None for p in months),
        )
        for j, member in enumerate(summary.members)
    ]
    if summary.shows_cooperative:
        rows.append(
            TrendRow(
                COOPERATIVE_NAME,
                tuple(trend[p].cooperative if p in trend else None for p in months),
            )
        )
    rows.append(TrendRow("Total", tuple(trend[p].total if p in trend else None for p in months)))
    ref = ledger.book.reference_host
    return Report(
        datacenter=ledger.fleet.name,
        range=rng,
        summary=summary,
        trend_months=months,
        trend_rows=tuple(rows),
        generated_at=generated_at.astimezone(ledger.zone),
        market_source=ledger.book.market.source,
        reference_host=(
            f"{ref.capacity.vcpu} vCPU, {ref.capacity.ram_gib} GiB RAM, "
            f"{ref.capacity.disk_gib} GiB disk at €{ref.monthly_cost:,.2f} per month, "
            f"at least {ref.min_hosts} per member"
        ),
        charts=_charts(summary, [(p, trend[p]) for p in months if p in trend], names),
    )


def _charts(
    summary: Summary, trend: Sequence[tuple[Period, Allocation]], names: Mapping[str, str]
) -> dict[str, str]:
    labels = [m.short for m in summary.members]
    by_pool: list[tuple[str, Sequence[Decimal], str]] = [
        (p.pool.name, [m.shares[i] for m in summary.members], charts.colour(i))
        for i, p in enumerate(summary.pools)
    ]
    out = {
        "split": charts.stacked_bars(labels, by_pool, "Each member's share, by cost pool"),
        "savings": charts.grouped_bars(
            labels,
            [
                ("Shared (this cooperative)", [m.gross for m in summary.members], "#1f4e79"),
                ("Standalone", [m.standalone for m in summary.members], "#c44e52"),
                ("Market price list", [m.market for m in summary.members], "#e0a339"),
            ],
            "What each member pays here, alone, and at market prices",
        ),
    }
    if trend:
        series: list[tuple[str, Sequence[Decimal], str]] = [
            (
                bill.short,
                [a.members[j].gross for _, a in trend],
                charts.colour(j),
            )
            for j, bill in enumerate(summary.members)
        ]
        if summary.shows_cooperative:
            series.append(("Idle capacity", [a.cooperative for _, a in trend], charts.IDLE_COLOUR))
        out["trend"] = charts.stacked_bars(
            [p.short.replace(" ", "\n") for p, _ in trend],
            series,
            "Monthly cost by member (share before credits) and idle capacity",
            horizontal=False,
        )
    return out


# -- rendering -------------------------------------------------------------------------------


def money(value: Decimal | None, symbol: bool = False) -> str:
    """12,345.67 with a real minus sign; an em dash for no value."""
    if value is None:
        return "—"
    text = f"{abs(value):,.2f}"
    if symbol:
        text = f"€\u00a0{text}"
    return f"\u2212{text}" if value < 0 else text


def whole(value: Decimal | int | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def and_join(items: Sequence[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def render_html(report: Report) -> str:
    """The report as a standalone HTML page (styles and SVG charts inline)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
    from markupsafe import Markup

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, whole=whole, percent=percent, and_join=and_join)
    svgs = {name: Markup(svg) for name, svg in report.charts.items()}
    return env.get_template("costs.html.j2").render(r=report, s=report.summary, charts=svgs)


def render_pdf(report: Report, path: Path) -> None:
    """The same HTML, laid out on A4 by WeasyPrint."""
    from weasyprint import HTML

    HTML(string=render_html(report), base_url=str(TEMPLATES)).write_pdf(str(path))
