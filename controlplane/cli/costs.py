"""``controlplane costs``: allocate a month between members; write the board's report.

Errors are raised as the project's error types; ``controlplane.cli`` turns them into one
line on stderr and the documented exit code.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.box import SIMPLE
from rich.table import Table

from controlplane.app import Context
from controlplane.cli_common import FleetOpt, JsonOpt, out, print_json
from controlplane.costs.history import ReservationHistory
from controlplane.costs.ledger import Ledger, open_ledger
from controlplane.costs.loader import load_costs
from controlplane.costs.model import IdlePolicy
from controlplane.costs.periods import Period, PeriodRange
from controlplane.errors import InvalidInput
from controlplane.settings import load_settings

costs_app = typer.Typer(
    help="Cost sharing between members: a month's allocation and the board's report.",
    no_args_is_help=True,
)

MonthOpt = Annotated[str, typer.Option("--period", help="The month, like 2026-10.")]
RangeOpt = Annotated[
    str, typer.Option("--period", help="A month like 2026-10 or a quarter like 2026-Q4.")
]


def _month(text: str) -> Period:
    try:
        return Period.parse(text)
    except InvalidInput as exc:
        raise InvalidInput(f"--period: {exc}") from None


def _range(text: str) -> PeriodRange:
    try:
        return PeriodRange.parse(text)
    except InvalidInput as exc:
        raise InvalidInput(f"--period: {exc}") from None


def _open(ctx: Context, periods: tuple[Period, ...]) -> Ledger:
    # Everything the user gave is checked before the store is touched: bad input writes nothing.
    book = load_costs(ctx.settings.resolved_fleet, ctx.fleet)
    for period in periods:
        book.costs(period)
    return open_ledger(ctx.fleet, book, ReservationHistory(ctx.engine), datetime.now(UTC))


@costs_app.command("allocate")
def allocate_cmd(period: MonthOpt, fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Split a month's cost pools between members, with savings; --json for exact figures."""
    from controlplane.costs.export import allocation_data

    def money(amount: Decimal) -> str:
        return f"{amount:.2f}"

    month = _month(period)
    ctx = Context(load_settings(fleet=fleet))
    try:
        ledger = _open(ctx, (month,))
        allocation = ledger.allocation(month)
    finally:
        ctx.close()
    names = ledger.names()
    if as_json:
        print_json(allocation_data(allocation, names, ledger.zone))
        return
    style: dict[str, Any] = {"box": SIMPLE, "collapse_padding": True, "pad_edge": False}
    shares = Table(title=f"Cost allocation {month} ({allocation.hours} h), euros", **style)
    shares.add_column("member")
    for s in allocation.pools:
        shares.add_column(f"{s.pool.slug}\n{s.pool.key.value}", justify="right")
    shares.add_column("share", justify="right")
    for bill in allocation.members:
        shares.add_row(
            bill.member,
            *(money(s.shares[bill.member]) for s in allocation.pools),
            money(bill.gross),
        )
    if any(s.pool.idle is IdlePolicy.COOPERATIVE for s in allocation.pools):
        shares.add_row(
            "cooperative",
            *(money(s.cooperative) for s in allocation.pools),
            money(allocation.cooperative),
            style="italic",
        )
    shares.add_row(
        "total",
        *(money(s.amount) for s in allocation.pools),
        money(allocation.total),
        style="bold",
    )
    bills = Table(title="Bills, euros", **style)
    for col in ("member", "share", "in-kind credits", "net to pay"):
        bills.add_column(col, justify="left" if col == "member" else "right")
    savings = Table(title="What sharing saves, euros", **style)
    for col in ("member", "standalone", "saving", "market", "saving"):
        savings.add_column(col, justify="left" if col == "member" else "right")
    for bill in allocation.members:
        bills.add_row(bill.member, money(bill.gross), money(-bill.credits), money(bill.total))
        savings.add_row(
            bill.member,
            money(bill.standalone),
            money(bill.saving_standalone),
            money(bill.market),
            money(bill.saving_market),
        )
    out.print(shares, bills, savings)


ReportFormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="html, pdf or csv (default: from the output file's suffix)."),
]


@costs_app.command("report")
def report_cmd(
    period: RangeOpt,
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write.")],
    fmt: ReportFormatOpt = None,
    fleet: FleetOpt = None,
) -> None:
    """Write the board's report for a month or quarter as HTML, PDF or FOCUS-style CSV."""
    from controlplane.costs.export import render_csv
    from controlplane.costs.report import ReportFormat, build_report, render_html, render_pdf

    rng = _range(period)
    kind = fmt or output.suffix.lstrip(".").lower()
    try:
        report_format = ReportFormat(kind)
    except ValueError:
        raise InvalidInput(f"--format: {kind!r} is not html, pdf or csv") from None
    target = output.resolve()
    if not target.parent.is_dir():
        raise InvalidInput(f"-o: directory {target.parent} does not exist")
    ctx = Context(load_settings(fleet=fleet))
    try:
        ledger = _open(ctx, rng.months)
        if report_format is ReportFormat.CSV:
            text = render_csv(ledger.allocations(rng.months), ledger.names(), ledger.zone)
        else:
            report = build_report(ledger, rng, datetime.now(UTC))
    finally:
        ctx.close()
    # Write next to the target and rename, so a failed render leaves no half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        if report_format is ReportFormat.CSV:
            Path(tmp).write_text(text, encoding="utf-8")
        elif report_format is ReportFormat.HTML:
            Path(tmp).write_text(render_html(report), encoding="utf-8")
        else:
            render_pdf(report, Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    out.print(f"wrote {target} ({rng.title}, {report_format.value})")
