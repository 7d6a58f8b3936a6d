"""The board's report, rendered for real through the CLI and read back (pdftotext, csv)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from controlplane.cli import run
from controlplane.costs.export import FOCUS_COLUMNS, csv_cell, render_csv
from controlplane.costs.ledger import Ledger
from controlplane.costs.loader import load_costs
from controlplane.costs.periods import Period, PeriodRange
from controlplane.costs.report import money, short_name
from controlplane.fleet.loader import load_fleet
from tests.conftest import LAB, missing


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One run of each format: October 2026 as PDF and HTML, Q4 2026 as CSV."""
    out = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTROLPLANE_DATA_DIR", str(out / "var"))
        for args in (
            ["--period", "2026-10", "--format", "pdf", "-o", str(out / "october.pdf")],
            ["--period", "2026-10", "-o", str(out / "october.html")],
            ["--period", "2026-Q4", "--format", "csv", "-o", str(out / "q4.csv")],
        ):
            assert run(["costs", "report", *args]) == 0
        yield out


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    fleet = load_fleet(LAB)
    book = load_costs(LAB, fleet)
    return Ledger(fleet, book, book.history)


def test_pdf_names_every_member_and_the_totals(reports: Path, ledger: Ledger) -> None:
    if shutil.which("pdftotext") is None:
        missing("pdftotext is not installed; scripts/setup.sh installs poppler-utils")
    pdf = reports / "october.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    october = ledger.allocation(Period(2026, 10))
    assert "Shared datacenter costs" in text and "October 2026" in text
    assert money(october.total) == "21,647.65" and "21,647.65" in text
    assert money(october.cooperative) in text
    for member in ledger.fleet.members:
        assert short_name(member.name) in text, member.slug
        bill = october.member(member.slug)
        assert money(bill.gross) in text and money(bill.total) in text
        assert money(bill.standalone) in text and money(bill.market) in text
    for pool in october.pools:
        assert pool.pool.name in text and money(pool.amount) in text
    assert "Trend over the last 12 months" in text


def test_html_is_the_same_template_with_inline_svg_charts(reports: Path) -> None:
    html = (reports / "october.html").read_text()
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") == 3 and "<?xml" not in html
    assert "Shared datacenter costs" in html and "Page " in html  # print CSS travels along


def test_csv_uses_focus_columns_and_its_sums_match_the_pools(reports: Path, ledger: Ledger) -> None:
    with (reports / "q4.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == FOCUS_COLUMNS
    usage: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    credits: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        assert row["BillingCurrency"] == "EUR"
        assert row["BilledCost"] == row["EffectiveCost"]
        if row["ChargeCategory"] == "Usage":
            usage[(row["ChargePeriodStart"], row["x_CostPool"])] += Decimal(row["BilledCost"])
        else:
            assert row["ChargeCategory"] == "Credit" and Decimal(row["BilledCost"]) < 0
            credits[row["ChargePeriodStart"]] += Decimal(row["BilledCost"])
    zone = ledger.zone
    for period in PeriodRange.parse("2026-Q4").months:
        start = period.start(zone).strftime("%Y-%m-%dT%H:%M:%SZ")
        for pool, amount in ledger.book.costs(period).pools.items():
            assert usage[(start, pool)] == amount, (period, pool)
        assert credits[start] == Decimal("-3050.00")
    october = [r for r in rows if r["ChargePeriodStart"] == "2026-09-30T22:00:00Z"]
    assert {r["ChargePeriodEnd"] for r in october} == {"2026-10-31T23:00:00Z"}  # 745 h later
    members = {r["SubAccountId"] for r in rows}
    assert members == {"amsterdam", "rotterdam", "den-haag", "utrecht", "cooperative"}
    ratios = defaultdict(Decimal)
    for r in october:
        if r["x_AllocatedRatio"]:
            ratios[r["x_CostPool"]] += Decimal(r["x_AllocatedRatio"])
    assert all(abs(total - 1) < Decimal("1e-8") for total in ratios.values())


# -- names that must stay text: no formulas in the CSV, no mathtext in the charts ----------------

HOSTILE_POOLS = {
    "    name: Energy": '    name: "$\\\\foo$ energy"',
    "    name: Software licences": '    name: "$x^{"',
    "    name: Facility": '    name: "=HYPERLINK(\\"http://evil\\";\\"x\\")"',
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """October 2026 as HTML, PDF and CSV from a fleet whose pool names look like code."""
    out = tmp_path_factory.mktemp("hostile")
    fleet = out / "fleet"
    shutil.copytree(LAB, fleet)
    costs = fleet / "costs.yml"
    text = costs.read_text()
    for old, new in HOSTILE_POOLS.items():
        assert old in text
        text = text.replace(old, new, 1)
    costs.write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTROLPLANE_DATA_DIR", str(out / "var"))
        for fmt in ("html", "pdf", "csv"):
            args = ["--period", "2026-10", "--format", fmt, "-o", str(out / f"october.{fmt}")]
            assert run(["costs", "report", *args, "--fleet", str(fleet)]) == 0, fmt
        yield out


def test_chart_labels_are_drawn_literally(hostile: Path) -> None:
    html = (hostile / "october.html").read_text()
    assert html.count("<svg") == 3
    # With text drawn as paths, matplotlib keeps each label's text in a comment beside it.
    assert "<!-- $\\foo$ energy -->" in html and "<!-- $x^{ -->" in html
    if shutil.which("pdftotext") is None:
        missing("pdftotext is not installed; scripts/setup.sh installs poppler-utils")
    text = subprocess.run(
        ["pdftotext", "-layout", str(hostile / "october.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "$\\foo$ energy" in text and "$x^{" in text


def test_csv_text_cells_cannot_start_a_formula(hostile: Path, ledger: Ledger) -> None:
    with (hostile / "october.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    facility = [r for r in rows if r["x_CostPool"] == "facility"]
    assert facility and all(
        r["ServiceName"] == "'" + '=HYPERLINK("http://evil";"x")' for r in facility
    )
    assert all(r["ChargeDescription"].startswith("'=HYPERLINK(") for r in facility)
    for row in rows:
        for column, value in row.items():
            if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
                assert column in ("BilledCost", "EffectiveCost"), (column, value)
                Decimal(value)  # a number, still summable
    credits = sum(Decimal(r["BilledCost"]) for r in rows if r["ChargeCategory"] == "Credit")
    assert credits == Decimal("-3050.00")
    october = ledger.allocation(Period(2026, 10))
    usage = sum(Decimal(r["BilledCost"]) for r in rows if r["ChargeCategory"] == "Usage")
    assert usage == october.total


@pytest.mark.parametrize(
    "name", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\uff1dSUM(A1)", "\uff20x"]
)
def test_every_formula_start_is_quoted(ledger: Ledger, name: str) -> None:
    names = {**ledger.names(), "utrecht": name}
    text = render_csv(ledger.allocations([Period(2026, 10)]), names, ledger.zone)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    utrecht = {r["SubAccountName"] for r in rows if r["SubAccountId"] == "utrecht"}
    assert utrecht == {"'" + name}
    assert csv_cell("Gemeente Utrecht") == "Gemeente Utrecht"
    assert csv_cell(Decimal("-12.50")) == Decimal("-12.50")
