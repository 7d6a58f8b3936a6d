"""Machine-readable exports of allocations: FOCUS-style CSV rows and plain JSON data.

The CSV is opened in spreadsheets, and a spreadsheet runs a cell that starts with ``=``,
``+``, ``-`` or ``@`` (or a tab or carriage return before one) as a formula. Member and pool
names come from the fleet files, so every text cell that starts with one of those (or with
their full-width forms, which some spreadsheets also accept) gets a leading single quote,
as OWASP advises against CSV injection. Amounts are written as numbers and never quoted
this way: a credit of ``-3050.00`` stays a number the board can sum.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from controlplane.costs.allocate import Allocation
from controlplane.costs.model import COOPERATIVE, CREDIT, IdlePolicy

COOPERATIVE_NAME = "Cooperative (idle capacity)"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")

FOCUS_COLUMNS = (
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ServiceName",
    "SubAccountId",
    "SubAccountName",
    "x_CostPool",
    "x_AllocationKey",
    "x_AllocatedRatio",
)


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_cell(value: object) -> object:
    """A cell a spreadsheet shows as written: text that could start a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(*values: object) -> list[object]:
    """One CSV row, every text cell through ``csv_cell``; numbers are left as they are."""
    return [csv_cell(v) for v in values]


def _ratio_text(ratio: Fraction) -> str:
    return f"{Decimal(ratio.numerator) / Decimal(ratio.denominator):.10f}"


def render_csv(allocations: Sequence[Allocation], names: Mapping[str, str], zone: ZoneInfo) -> str:
    """FOCUS-style rows: every member's share of every pool, idle lines, in-kind credits.

    Per month and pool the Usage rows add up to the pool exactly; credits are negative
    ``Credit`` rows under ``x_CostPool`` ``in-kind-credit``.
    """
    buf = io.StringIO()
    # CRLF as RFC 4180 has it; it also makes the writer quote a text holding a lone CR,
    # which would otherwise end the row early in every reader.
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(FOCUS_COLUMNS)
    for a in allocations:
        start, end = _utc(a.period.start(zone)), _utc(a.period.end(zone))
        period = [start, end, start, end]
        for split in a.pools:
            pool = split.pool
            parties = [(m, names.get(m, m), amount) for m, amount in split.shares.items()]
            if pool.idle is IdlePolicy.COOPERATIVE:
                parties.append((COOPERATIVE, COOPERATIVE_NAME, split.cooperative))
            for member, name, amount in parties:
                ratio = split.ratios.get(member, Fraction(0))
                description = f"{pool.name}: {pool.key.describe}"
                if member == COOPERATIVE:
                    description = f"{pool.name}: capacity nobody reserved"
                writer.writerow(
                    safe_row(
                        *period,
                        "Usage",
                        description,
                        amount,
                        amount,
                        "EUR",
                        pool.service_name,
                        member,
                        name,
                        pool.slug,
                        pool.key.value,
                        _ratio_text(ratio),
                    )
                )
        for bill in a.members:
            for line in bill.lines:
                if line.pool != CREDIT:
                    continue
                against = f" (against {line.against})" if line.against else ""
                writer.writerow(
                    safe_row(
                        *period,
                        "Credit",
                        f"In-kind contribution: {line.label}{against}",
                        line.amount,
                        line.amount,
                        "EUR",
                        "In-kind contribution",
                        bill.member,
                        names.get(bill.member, bill.member),
                        CREDIT,
                        "in-kind",
                        "",
                    )
                )
    return buf.getvalue()


def allocation_data(a: Allocation, names: Mapping[str, str], zone: ZoneInfo) -> dict[str, Any]:
    """One period's allocation as plain JSON data; money as exact decimal strings."""
    return {
        "period": str(a.period),
        "start": a.period.start(zone).isoformat(),
        "end": a.period.end(zone).isoformat(),
        "hours": str(a.hours),
        "currency": "EUR",
        "total": str(a.total),
        "cooperative": str(a.cooperative),
        "credits": str(a.credits),
        "pools": [
            {
                "pool": s.pool.slug,
                "name": s.pool.name,
                "key": s.pool.key.value,
                "idle": s.pool.idle.value,
                "amount": str(s.amount),
                "shares": {m: str(v) for m, v in s.shares.items()},
                "cooperative": str(s.cooperative),
            }
            for s in a.pools
        ],
        "members": [
            {
                "member": b.member,
                "name": names.get(b.member, b.member),
                "lines": [
                    {"pool": ln.pool, "label": ln.label, "amount": str(ln.amount)} for ln in b.lines
                ],
                "gross": str(b.gross),
                "credits": str(b.credits),
                "total": str(b.total),
                "standalone": str(b.standalone),
                "market": str(b.market),
                "saving_standalone": str(b.saving_standalone),
                "saving_market": str(b.saving_market),
                "caseload": b.caseload,
                "reserved_hours": dict(
                    zip(("vcpu", "ram_gib", "disk_gib"), map(str, b.usage.hours()), strict=True)
                ),
            }
            for b in a.members
        ],
    }
