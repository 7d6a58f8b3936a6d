"""Bounded work for any input: RRULEs at most hourly, capped queries, lookups that do not grow.

The work of a gate is counted in occurrences taken from dateutil (``Gate.expanded``), not in
wall time, so these tests are exact on a busy machine.
"""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controlplane.cli import run
from controlplane.errors import FleetInvalid, InvalidInput
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.uptime.windows import gate_calendar
from controlplane.windows.bounds import Limits
from controlplane.windows.conflicts import find_conflicts
from controlplane.windows.gate import Gate
from controlplane.windows.loader import parse_windows
from controlplane.windows.rules import Scope, Window, WindowKind
from tests.conftest import LAB

AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(LAB)


def window(name: str = "w", **kw: Any) -> Window:
    base: dict[str, Any] = {
        "name": name,
        "kind": WindowKind.MAINTENANCE,
        "scope": Scope(host="lab-1"),
        "rrule": "FREQ=HOURLY",
        "start": datetime(2026, 1, 1, 0, 0),
        "duration": timedelta(minutes=30),
    }
    return Window(**(base | kw))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- RRULEs: at most once an hour ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rrule", "words"),
    [
        ("FREQ=HOURLY;FREQ=SECONDLY", "FREQ is given twice"),
        ("FREQ=WEEKLY;BYDAY=MO;BYDAY=TU", "BYDAY is given twice"),
        ("FREQ=SECONDLY", "FREQ=SECONDLY is too frequent"),
        ("FREQ=MINUTELY;INTERVAL=60", "FREQ=MINUTELY is too frequent"),
        ("FREQ=HOURLY;BYMINUTE=0,30", "BYMINUTE=0,30 starts a window more than once an hour"),
        ("FREQ=DAILY;BYSECOND=0,1", "BYSECOND=0,1 starts a window more than once an hour"),
        (
            "FREQ=HOURLY;BYMINUTE=" + ",".join(map(str, range(60))) + ";BYSECOND=0,30",
            "starts a window more than once an hour",
        ),
        ("FREQ=HOURLY;INTERVAL=0", "INTERVAL=0 must be a whole number of at least 1"),
        ("FREQ=DAILY;COUNT=10001", "COUNT=10001 is more than 10000 occurrences"),
        ("BYDAY=MO", "has no FREQ"),
    ],
)
def test_rules_that_fire_more_than_hourly_are_refused(fleet: Fleet, rrule: str, words: str) -> None:
    doc = {
        "windows": [
            {
                "name": "too-often",
                "kind": "maintenance",
                "scope": {"host": "lab-1"},
                "rrule": rrule,
                "start": "2026-01-01T00:00",
                "duration": "PT30M",
            }
        ]
    }
    with pytest.raises(FleetInvalid) as info:
        parse_windows(doc, fleet, "windows.yml")
    message = str(info.value)
    assert message.startswith("windows.yml: windows[too-often].rrule: "), message
    assert words in message and "\n" not in message


@pytest.mark.parametrize(
    "rrule",
    [
        "FREQ=HOURLY",
        "FREQ=HOURLY;BYMINUTE=15;BYSECOND=0",
        "FREQ=HOURLY;BYMINUTE=0,00",  # the same minute twice is one minute
        "FREQ=DAILY;BYHOUR=1,2",
        "FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23",
        "FREQ=DAILY;COUNT=10000",
    ],
)
def test_the_edges_of_once_an_hour_are_allowed(rrule: str) -> None:
    assert window(rrule=rrule).rrule == rrule


def test_an_hourly_rule_never_starts_twice_in_an_hour(fleet: Fleet) -> None:
    w = window(
        rrule="FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23"
    )
    occ = Gate(fleet, [w]).occurrences_between(utc(2026, 3, 20), utc(2026, 11, 1))
    hours = [o.start.replace(minute=0, second=0) for o in occ]
    assert len(hours) == len(set(hours)) > 5000  # both DST changes included


def test_validate_command_refuses_a_too_frequent_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "fleet"
    shutil.copytree(LAB, lab)
    path = lab / "windows.yml"
    text = path.read_text()
    old = "rrule: FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-3,-2,-1"
    path.write_text(text.replace(old, "rrule: FREQ=HOURLY;FREQ=SECONDLY", 1))
    assert run(["validate", "--fleet", str(lab)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    assert f"{path}: windows[payment-run-amsterdam].rrule: " in lines[0]
    assert "FREQ is given twice" in lines[0]


# -- restarting a rule near the moment asked about -------------------------------------------

RULES = [
    "FREQ=DAILY",
    "FREQ=DAILY;INTERVAL=3",
    "FREQ=WEEKLY",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SA",
    "FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SU,MO",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;BYSETPOS=1",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-3,-2,-1",
    "FREQ=MONTHLY;INTERVAL=5",
    "FREQ=MONTHLY;BYMONTHDAY=31",
    "FREQ=YEARLY",
    "FREQ=YEARLY;INTERVAL=3;BYMONTH=3;BYDAY=-1SU",
    "FREQ=YEARLY;BYWEEKNO=1,53;BYDAY=MO",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
    "FREQ=HOURLY",
    "FREQ=HOURLY;INTERVAL=7;BYHOUR=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22",
    "FREQ=DAILY;BYHOUR=1,2;BYMINUTE=30",
    "FREQ=DAILY;UNTIL=20300101T000000Z",
]


@pytest.mark.parametrize("rrule", RULES)
def test_a_restarted_rule_gives_the_same_occurrences(rrule: str) -> None:
    rng = random.Random(rrule)
    moved = 0
    for zone in ("Europe/Amsterdam", "America/Santiago"):  # Santiago: DST at midnight
        start = datetime(2025, 1, 1) + timedelta(minutes=rng.randrange(3 * 365 * 24 * 60))
        w = window(rrule=rrule, start=start.replace(second=rng.choice((0, 13))), timezone=zone)
        for _ in range(4):
            days = rng.randrange(30, 400 if "HOURLY" in rrule else 3000)  # dateutil walks them
            at = (start + timedelta(days=days)).replace(tzinfo=w.zone)
            rule, anchor = w.rule_from(at)
            if anchor is None:  # ``at`` is in the first period (a year, for YEARLY)
                continue
            moved += 1
            assert anchor <= at
            hi = anchor + timedelta(days=40 if "HOURLY" in rrule else 800)
            assert list(rule.between(anchor, hi, inc=True)) == list(
                w.rule().between(anchor, hi, inc=True)
            )
    assert moved >= 2


def test_a_counted_rule_is_not_restarted() -> None:
    w = window(rrule="FREQ=DAILY;COUNT=500")
    assert w.rule_from(utc(2026, 9, 1))[1] is None


# -- the probe loop's lookup does not grow with time ------------------------------------------


def probe_work(fleet: Fleet, at: datetime) -> int:
    """Occurrences a fresh gate expands to answer the probe loop's two questions once."""
    gate = Gate(fleet, [window(), window("weekly", rrule="FREQ=WEEKLY;BYDAY=TU")])
    calendar = gate_calendar(gate)
    instance = next(i for i in fleet.instances() if i.host == "lab-1")
    calendar.in_window(instance, at)
    calendar.next_window_start(instance.member, at)
    return gate.expanded


def test_the_window_lookup_costs_the_same_in_2036_as_in_2026(fleet: Fleet) -> None:
    early = probe_work(fleet, utc(2026, 2, 1, 12, 10))
    late = probe_work(fleet, utc(2036, 2, 1, 12, 10))
    assert early < 4000  # about 70 days of hourly occurrences
    assert late <= early + 200  # not the 87,000 hours since the start


def test_a_long_running_probe_loop_keeps_a_bounded_stretch(fleet: Fleet) -> None:
    gate = Gate(fleet, [window(rrule="FREQ=DAILY")])
    calendar = gate_calendar(gate)
    instance = next(i for i in fleet.instances() if i.host == "lab-1")
    kept = 0
    for day in range(6 * 365):
        at = datetime(2026, 1, 2, 0, 10, tzinfo=AMS) + timedelta(days=day)  # 00:10 local
        assert calendar.in_window(instance, at)
        kept = max(kept, len(gate._expansions["w"].starts))
    assert kept < 900  # at most about 800 days kept, not six years


# -- caps on a query ---------------------------------------------------------------------------


def test_a_range_spans_at_most_400_days(fleet: Fleet) -> None:
    gate = Gate(fleet, [window(rrule="FREQ=WEEKLY")])
    assert len(gate.occurrences_between(NOW, NOW + timedelta(days=400))) == 57
    with pytest.raises(InvalidInput) as info:
        gate.occurrences_between(NOW, NOW + timedelta(days=800))
    assert str(info.value) == "to: span from 'from' is 800 days; at most 400 days"
    with pytest.raises(InvalidInput, match=r"^to: span from 'from' is 401 days"):
        find_conflicts(gate, NOW, NOW + timedelta(days=401))


def test_a_query_returns_at_most_10000_occurrences(fleet: Fleet) -> None:
    gate = Gate(fleet, [window("a"), window("b")])  # two hourly windows
    assert len(gate.occurrences_between(NOW, NOW + timedelta(days=200))) == 9600
    with pytest.raises(InvalidInput, match=r"^to: the range holds more than 10000 occurrences"):
        gate.occurrences_between(NOW, NOW + timedelta(days=300))
    with pytest.raises(InvalidInput, match=r"^count: must be between 1 and 10000$"):
        gate.next_occurrences("a", NOW, count=10_001)
    small = Gate(fleet, [window("a")], limits=Limits(max_occurrences=10))
    with pytest.raises(InvalidInput, match="more than 10 occurrences"):
        small.occurrences_between(NOW, NOW + timedelta(days=1))


def test_moments_stay_within_ten_years_of_the_clock(fleet: Fleet) -> None:
    gate = Gate(fleet, [window()], clock=lambda: NOW)
    assert gate.check_host("lab-1", NOW + timedelta(days=3650)).allowed
    with pytest.raises(InvalidInput) as info:
        gate.check_host("lab-1", utc(2090, 1, 1))
    assert str(info.value).startswith("at: 2090-01-01T00:00:00Z is 63.1 years after now; ")
    assert str(info.value).endswith("at most 10 years either side")
    with pytest.raises(InvalidInput, match=r"^from: 2000-01-01T00:00:00Z is 26\.9 years before"):
        gate.occurrences_between(utc(2000, 1, 1), utc(2000, 1, 2))
    with pytest.raises(InvalidInput, match=r"^after: "):
        gate.next_occurrences("w", utc(2050, 1, 1))


def test_without_a_clock_the_calendar_ends_still_hold(fleet: Fleet) -> None:
    gate = Gate(fleet, [window()])
    assert gate.check_host("lab-1", utc(2150, 6, 1, 0, 10)).allowed  # bounded work, far out
    for at in (utc(9999, 12, 31), utc(1, 1, 2)):
        with pytest.raises(InvalidInput, match=r"^at: .* is outside the years 1971 to 2199$"):
            gate.check_host("lab-1", at)


# -- through the command line ------------------------------------------------------------------


def test_cli_limits_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    fleet = ["--fleet", str(LAB)]
    cases = [
        (
            ["windows", "list", "--from", "2026-01-01", "--to", "2028-01-01"],
            "error: to: span from 'from' is 730 days; at most 400 days",
        ),
        (
            ["windows", "conflicts", "--from", "2026-01-01", "--to", "2027-06-01"],
            "error: to: span from 'from' is 516 days; at most 400 days",
        ),
        (["windows", "check", "amsterdam", "--at", "2090-01-01"], "error: at: 2089-12-31T23"),
        (["windows", "check-host", "lab-1", "--at", "9999-12-31"], "error: at: 9999-12-30T23"),
    ]
    for args, start in cases:
        assert run([*args, *fleet]) == 2, args
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert captured.out == "" and len(lines) == 1, captured.err
        assert lines[0].startswith(start), lines[0]
