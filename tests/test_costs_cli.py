"""`controlplane costs`: each kind of bad input is one line and exit 2, and writes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from controlplane.cli import run
from tests.conftest import LAB

CLI = str(Path(sys.executable).parent / "controlplane")


@pytest.fixture
def lab_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    target = tmp_path / "fleet"
    shutil.copytree(LAB, target)
    return target


def edit(path: Path, old: str, new: str, after: str = "") -> None:
    """Replace the first ``old`` that follows ``after`` in the file."""
    text = path.read_text()
    at = text.index(after)
    assert old in text[at:], f"{old!r} not in {path} after {after!r}"
    path.write_text(text[:at] + text[at:].replace(old, new, 1))


OCTOBER = '"2026-10":'

# Each case: (old text, new text, text it follows, period, the words the one line names).
BAD_INPUT = {
    "negative-pool": (
        "energy: 1187.65",
        "energy: -1187.65",
        OCTOBER,
        "2026-10",
        ["costs.yml", "periods.2026-10.pools.energy", "greater than or equal to 0"],
    ),
    "fixed-shares-not-100": (
        "utrecht: 15}",
        "utrecht: 10}",
        "shares:",
        "2026-10",
        ["costs.yml", "pools[operations].shares", "sum to 95%, not 100%"],
    ),
    "member-without-caseload": (
        ", utrecht: 10611}",
        "}",
        OCTOBER,
        "2026-10",
        ["costs.yml", "periods.2026-10.caseload.utrecht", "required field is missing"],
    ),
    "period-without-data": (
        "",
        "",
        "",
        "2027-01",
        ["costs.yml", "periods.2027-01", "no cost data for this period"],
    ),
    "malformed-period": ("", "", "", "2026-13", ["period: ", "'2026-13' is not a month"]),
    "unknown-member-share": (
        "den-haag: 25,",
        "leiden: 25,",
        "shares:",
        "2026-10",
        ["costs.yml", "pools[operations].shares.leiden", "unknown member"],
    ),
    "money-below-a-cent": (
        "facility: 1500.00}",
        "facility: 1500.005}",
        OCTOBER,
        "2026-10",
        ["costs.yml", "periods.2026-10.pools.facility", "decimal places"],
    ),
    "unknown-key": (
        "key: equal",
        "key: population",
        "slug: facility",
        "2026-10",
        ["costs.yml", "pools[facility].key", "'equal', 'fixed', 'reserved' or 'caseload'"],
    ),
    "history-unknown-host": (
        "hosts: [lab-2], since: 2026-10-12",
        "hosts: [lab-9], since: 2026-10-12",
        "history:",
        "2026-10",
        ["costs.yml", "history[7].hosts[0]", "unknown host 'lab-9'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, lab_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, after, period, words = BAD_INPUT[case]
    if old:
        edit(lab_copy / "costs.yml", old, new, after)
    code = run(["costs", "allocate", "--period", period, "--fleet", str(lab_copy)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert not (lab_copy.parent / "var" / "controlplane.db").exists()


def test_report_rejects_a_bad_quarter_and_format(
    lab_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "r.pdf")
    assert run(["costs", "report", "--period", "2026-Q5", "-o", out]) == 2
    assert (
        "'2026-Q5' is not a month like 2026-10 or a quarter like 2026-Q4" in capsys.readouterr().err
    )
    assert run(["costs", "report", "--period", "2026-Q4", "-o", str(tmp_path / "r.txt")]) == 2
    assert "format: 'txt'" in capsys.readouterr().err
    assert run(["costs", "report", "--period", "2027-Q1", "-o", out]) == 2
    assert "periods.2027-01: no cost data" in capsys.readouterr().err
    assert not list(tmp_path.glob("r.*")) and not list(tmp_path.glob(".r.*"))


def test_the_installed_command_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CLI, "costs", "allocate", "--period", "2026-13"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "CONTROLPLANE_DATA_DIR": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: period: '2026-13' is not a month like 2026-10"


def test_allocate_json_adds_up(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["costs", "allocate", "--period", "2026-10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["period"] == "2026-10" and data["hours"] == "745"
    assert data["total"] == "21647.65"
    for pool in data["pools"]:
        parts = sum(map(Decimal, pool["shares"].values())) + Decimal(pool["cooperative"])
        assert parts == Decimal(pool["amount"])
    members = {m["member"]: m for m in data["members"]}
    assert list(members) == ["amsterdam", "rotterdam", "den-haag", "utrecht"]
    for m in members.values():
        assert sum(Decimal(line["amount"]) for line in m["lines"]) == Decimal(m["total"])
    assert members["rotterdam"]["credits"] == "1500.00"
    assert members["den-haag"]["reserved_hours"]["vcpu"] == "2103.00"
    # The table view works too, and the history recorded on the first run is reused.
    assert run(["costs", "allocate", "--period", "2026-10"]) == 0
    assert "amsterdam" in capsys.readouterr().out
