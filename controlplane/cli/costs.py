"""``controlplane costs``: allocate a month between members; write the board's report.

Errors are raised as the project's error types; ``controlplane.cli`` turns them into one
line on stderr and the documented exit code.
"""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.box import SIMPLE
from rich.table import Table

from controlplane.cli.common import FleetOpt, JsonOpt, context, me, out, print_json
from controlplane.cli.remote import remote
from controlplane.costs import operations as ops
from controlplane.errors import InvalidInput

costs_app = typer.Typer(
    help="Cost sharing between members: a month's allocation and the board's report.",
    no_args_is_help=True,
)

MonthOpt = Annotated[str, typer.Option("--period", help="The month, like 2026-10.")]
RangeOpt = Annotated[
    str, typer.Option("--period", help="A month like 2026-10 or a quarter like 2026-Q4.")
]


@costs_app.command("allocate")
def allocate_cmd(period: MonthOpt, fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Split a month's cost pools between members, with savings; --json for exact figures."""
    ops.parse_month(period)  # bad input fails before the store is opened
    client = remote(fleet)
    if client is not None:
        with client:
            allocation = client.allocation(period)
    else:
        with context(fleet) as ctx:
            allocation = ops.allocate(ctx, me(), period)
    if as_json:
        print_json(allocation)
        return
    style: dict[str, Any] = {"box": SIMPLE, "collapse_padding": True, "pad_edge": False}
    shares = Table(
        title=f"Cost allocation {allocation.period} ({allocation.hours} h), euros", **style
    )
    shares.add_column("member")
    for p in allocation.pools:
        shares.add_column(f"{p.pool}\n{p.key}", justify="right")
    shares.add_column("share", justify="right")
    for bill in allocation.members:
        shares.add_row(
            bill.member,
            *(_money(p.shares[bill.member]) for p in allocation.pools),
            _money(bill.gross),
        )
    if any(p.idle == "cooperative" for p in allocation.pools):
        shares.add_row(
            "cooperative",
            *(_money(p.cooperative) for p in allocation.pools),
            _money(allocation.cooperative),
            style="italic",
        )
    shares.add_row(
        "total",
        *(_money(p.amount) for p in allocation.pools),
        _money(allocation.total),
        style="bold",
    )
    bills = Table(title="Bills, euros", **style)
    for col in ("member", "share", "in-kind credits", "net to pay"):
        bills.add_column(col, justify="left" if col == "member" else "right")
    savings = Table(title="What sharing saves, euros", **style)
    for col in ("member", "standalone", "saving", "market", "saving"):
        savings.add_column(col, justify="left" if col == "member" else "right")
    for bill in allocation.members:
        bills.add_row(
            bill.member, _money(bill.gross), _money(bill.credits, negate=True), _money(bill.total)
        )
        savings.add_row(
            bill.member,
            *(
                _money(v)
                for v in (bill.standalone, bill.saving_standalone, bill.market, bill.saving_market)
            ),
        )
    out.print(shares, bills, savings)


def _money(amount: str, negate: bool = False) -> str:
    value = Decimal(amount)
    return f"{-value if negate else value:.2f}"


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
    title = ops.parse_range(period).title
    kind = ops.parse_format(fmt or output.suffix.lstrip("."))
    target = output.resolve()
    if not target.parent.is_dir():
        raise InvalidInput(f"output: directory {target.parent} does not exist")
    client = remote(fleet)
    if client is not None:
        with client:
            content = client.report(period, kind.value).content
    else:
        with context(fleet) as ctx:
            content = ops.report(ctx, me(), period, kind.value).content
    # Write next to the target and rename, so a failed write leaves no half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    out.print(f"wrote {target} ({title}, {kind.value})")
