"""`controlplane windows ...`: list, check (exit 0/3), conflicts, ics; bad windows.yml -> exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar

from controlplane.cli import run
from tests.conftest import LAB

CLI = str(Path(sys.executable).parent / "controlplane")
FLEET = ["--fleet", str(LAB)]
CHECK_AMS = ["windows", "check", "amsterdam"]


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    target = tmp_path / "fleet"
    shutil.copytree(LAB, target)
    return target


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_defaults_to_the_next_30_days(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["windows", "list", "--json", *FLEET], capsys)
    assert code == 0
    data = json.loads(out)
    start = datetime.fromisoformat(data["from"])
    assert abs(start - datetime.now(UTC)) < timedelta(minutes=1)
    assert datetime.fromisoformat(data["to"]) - start == timedelta(days=30)
    patches = [o for o in data["occurrences"] if o["kind"] == "maintenance"]
    assert len(patches) >= 16  # four hosts, weekly
    first = data["occurrences"][0]
    assert set(first) >= {"window", "kind", "scope", "start_local", "end_local", "start_utc"}


def test_list_range_member_local_and_utc(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["windows", "list", "--member", "utrecht", "--from", "2026-03-27", "--to", "2026-04-03"]
    code, out, _ = cli([*args, "--json", *FLEET], capsys)
    assert code == 0
    occ = json.loads(out)["occurrences"]
    freezes = [o for o in occ if o["kind"] == "freeze"]
    assert [o["window"] for o in freezes] == ["payment-run-utrecht"] * 3
    assert [o["start_local"] for o in freezes] == [
        "2026-03-27T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]
    assert freezes[1]["start_utc"] == "2026-03-29T22:00:00Z"
    # utrecht runs on lab-1, lab-2 and lab-4, not lab-3.
    assert {o["window"] for o in occ if o["kind"] == "maintenance"} == {
        "patch-lab-1",
        "patch-lab-2",
        "patch-lab-4",
    }
    code, out, _ = cli([*args, *FLEET], capsys)
    assert code == 0 and "payment-run-utrecht" in out and "CEST" in out


def test_check_exit_codes_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        ["windows", "check", "amsterdam", "--at", "2026-01-28T12:00", "--json", *FLEET], capsys
    )
    assert code == 3 and err == ""
    data = json.loads(out)
    assert data["status"] == "refused" and data["reason"] == "freeze"
    assert data["freezes"][0]["window"] == "payment-run-amsterdam"
    assert data["next_allowed"] == "2026-01-30T23:00:00Z"
    code, out, _ = cli(
        [*CHECK_AMS, "--app", "uitkering", "--at", "2026-01-20T12:00+01:00", "--json", *FLEET],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "allowed" and data["hosts"] == ["lab-1", "lab-2"]
    code, out, _ = cli(["windows", "check", "amsterdam", "--at", "2026-01-28", *FLEET], capsys)
    assert code == 3 and "REFUSED" in out and "next opening: 2026-01-31 00:00 CET" in out


def test_check_host(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["windows", "check-host", "lab-2", "--json", *FLEET]
    code, out, _ = cli([*args, "--at", "2026-01-20T05:15"], capsys)  # Tuesday, local
    assert code == 0 and json.loads(out)["reason"] == "in-window"
    code, out, _ = cli([*args, "--at", "2026-01-20T06:45"], capsys)
    assert code == 3 and json.loads(out)["reason"] == "cutoff"


def test_conflicts(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["windows", "conflicts", "--from", "2026-01-01", "--to", "2026-03-01", *FLEET]
    code, out, _ = cli([*args, "--json"], capsys)
    assert code == 0
    found = json.loads(out)["conflicts"]
    assert [(c["window"], c["start_local"][:10]) for c in found] == [
        ("patch-lab-3", "2026-01-28"),
        ("patch-lab-4", "2026-01-29"),
        ("patch-lab-3", "2026-02-25"),
        ("patch-lab-4", "2026-02-26"),
    ]
    code, out, _ = cli(args, capsys)
    assert code == 0 and "4 conflicts" in out


def test_ics_is_importable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(["windows", "ics", "den-haag", *FLEET], capsys)
    assert code == 0
    cal = Calendar.from_ical(out.encode())
    cal.validate()
    names = sorted(str(e["uid"]).split("@")[0] for e in cal.walk("VEVENT"))
    assert names == [
        "patch-lab-1",
        "patch-lab-2",
        "patch-lab-3",
        "patch-lab-4",
        "payment-run-den-haag",
    ]
    target = tmp_path / "den-haag.ics"
    assert run(["windows", "ics", "den-haag", "--app", "uitkering", "-o", str(target), *FLEET]) == 0
    events = Calendar.from_ical(target.read_bytes()).walk("VEVENT")
    assert len(events) == 3  # uitkering runs on lab-3 and lab-4; plus the freeze


def test_fleet_without_windows_file(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (lab_copy / "windows.yml").unlink()
    code, out, _ = cli(["windows", "list", "--json", "--fleet", str(lab_copy)], capsys)
    assert code == 0 and json.loads(out)["occurrences"] == []
    code, out, _ = cli(["windows", "check", "amsterdam", "--fleet", str(lab_copy)], capsys)
    assert code == 0


# Each case: the first window's text to replace, its replacement, and the field and words
# the one-line error must name.
FIRST = "payment-run-amsterdam"
BAD = {
    "invalid-rrule": (
        "    rrule: FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-3,-2,-1\n    start",
        "    rrule: FREQ=MONTHLY;BYDAY=MO,XX\n    start",
        f"windows[{FIRST}].rrule",
        "invalid RRULE",
    ),
    "unknown-timezone": (
        "    duration: P1D\n    description: Benefit payment run, Amsterdam.",
        "    duration: P1D\n    timezone: Europe/Atlantis\n    description: x",
        f"windows[{FIRST}].timezone",
        "unknown time zone 'Europe/Atlantis'",
    ),
    "zero-duration": (
        "    duration: P1D\n    description: Benefit payment run, Amsterdam.",
        "    duration: PT0M\n    description: x",
        f"windows[{FIRST}].duration",
        "must be longer than zero",
    ),
    "negative-duration": (
        "    duration: P1D\n    description: Benefit payment run, Amsterdam.",
        "    duration: -PT1H\n    description: x",
        f"windows[{FIRST}].duration",
        "not a duration",
    ),
    "cutoff-longer-than-window": (
        "    scope: {host: lab-1}\n    rrule: FREQ=WEEKLY;BYDAY=MO\n    start: 2025-01-06T05:00\n"
        "    duration: PT2H\n    cutoff_minutes: 30\n",
        "    scope: {host: lab-1}\n    rrule: FREQ=WEEKLY;BYDAY=MO\n    start: 2025-01-06T05:00\n"
        "    duration: PT2H\n    cutoff_minutes: 150\n",
        "windows[patch-lab-1].cutoff_minutes",
        "cutoff (150 min) must be shorter than the window (2:00:00)",
    ),
    "unknown-member": (
        "    scope: {member: amsterdam}",
        "    scope: {member: leiden}",
        f"windows[{FIRST}].scope.member",
        "unknown member 'leiden'",
    ),
    "unknown-host": (
        "    scope: {host: lab-1}",
        "    scope: {host: lab-9}",
        "windows[patch-lab-1].scope.host",
        "unknown host 'lab-9'",
    ),
    "unknown-app": (
        "    scope: {member: amsterdam}",
        "    scope: {member: amsterdam, app: parkeren}",
        f"windows[{FIRST}].scope.app",
        "unknown app 'parkeren'",
    ),
    "unknown-kind": (
        "    kind: freeze\n    scope: {member: amsterdam}",
        "    kind: blackout\n    scope: {member: amsterdam}",
        f"windows[{FIRST}].kind",
        "'maintenance' or 'freeze'",
    ),
    "unknown-field": (
        "    duration: P1D\n    description: Benefit payment run, Amsterdam.",
        "    duration: P1D\n    colour: red",
        f"windows[{FIRST}].colour",
        "unknown field",
    ),
    "duplicate-key": (
        "    duration: P1D\n    description: Benefit payment run, Amsterdam.",
        "    duration: P1D\n    duration: P2D",
        "line 13",
        "duplicate key 'duration'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_windows_file_is_one_line_exit_2(
    case: str, lab_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, field, words = BAD[case]
    path = lab_copy / "windows.yml"
    text = path.read_text()
    assert old in text, f"{old!r} not in windows.yml"
    path.write_text(text.replace(old, new, 1))
    for command in (["list"], ["check", "amsterdam"], ["conflicts"], ["ics", "utrecht"]):
        code, out, err = cli(["windows", *command, "--fleet", str(lab_copy)], capsys)
        assert code == 2, (command, err)
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: {path}: {field}: "), lines[0]
        assert words in lines[0]


def test_bad_command_line_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["windows", "check", "amsterdam", "--at", "tomorrow", *FLEET], capsys)
    assert code == 2 and err.strip() == "error: at: 'tomorrow' is not a time like 2026-03-29T02:30"
    code, _, err = cli(["windows", "check", "leiden", *FLEET], capsys)
    assert code == 2 and "unknown member 'leiden'" in err
    code, _, err = cli(
        ["windows", "list", "--from", "2026-02-01", "--to", "2026-01-01", *FLEET], capsys
    )
    assert code == 2 and "to: must be after from" in err


def test_console_script_exit_code_3() -> None:
    proc = subprocess.run(
        [CLI, "windows", "check", "rotterdam", "--at", "2026-01-29T09:00", *FLEET],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "frozen by payment-run-rotterdam" in proc.stdout
