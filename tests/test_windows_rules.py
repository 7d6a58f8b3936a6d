"""Windows: validation on construction, expansion in local time, DST edges in Europe/Amsterdam."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controlplane.errors import FleetInvalid
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.windows.gate import Gate
from controlplane.windows.loader import load_windows, parse_windows
from controlplane.windows.rules import (
    Scope,
    ScopeKind,
    Window,
    WindowKind,
    parse_duration,
)
from tests.conftest import LAB

AMS = ZoneInfo("Europe/Amsterdam")


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(LAB)


def window(**kw: Any) -> Window:
    base: dict[str, Any] = {
        "name": "w",
        "kind": WindowKind.MAINTENANCE,
        "scope": Scope(host="lab-1"),
        "rrule": "FREQ=DAILY",
        "start": datetime(2026, 3, 1, 2, 30),
        "duration": timedelta(hours=1),
    }
    return Window(**(base | kw))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT4H", timedelta(hours=4)),
        ("P1D", timedelta(days=1)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1W", timedelta(weeks=1)),
        ("4h30m", timedelta(hours=4, minutes=30)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "4 hours", "-PT1H", "1.5h", "PT4X"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"rrule": "FREQ=FORTNIGHTLY"}, "invalid RRULE"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "invalid RRULE"),
        ({"rrule": "garbage"}, "invalid RRULE"),
        ({"rrule": "FREQ=MINUTELY"}, "too frequent"),
        ({"rrule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"}, "one RRULE"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "no occurrence"),
        ({"rrule": "FREQ=DAILY;UNTIL=20260101T000000Z"}, "no occurrence"),
        ({"timezone": "Europe/Atlantis"}, "unknown time zone"),
        ({"duration": timedelta(0)}, "longer than zero"),
        ({"duration": timedelta(minutes=-5)}, "longer than zero"),
        ({"duration": "PT0H"}, "longer than zero"),
        ({"cutoff_minutes": 60}, "cutoff (60 min) must be shorter"),
        ({"cutoff_minutes": -1}, "greater than or equal to 0"),
        ({"kind": WindowKind.FREEZE, "cutoff_minutes": 10}, "a freeze has no cutoff"),
        ({"until": date(2026, 2, 1)}, "before the start"),
        ({"rrule": "FREQ=DAILY;UNTIL=20261231T000000Z", "until": date(2026, 12, 31)}, "once"),
        ({"rrule": "FREQ=DAILY;COUNT=3", "until": date(2026, 12, 31)}, "not both"),
        ({"rrule": "FREQ=DAILY;COUNT=3;UNTIL=20261231T000000Z"}, "COUNT or UNTIL"),
        ({"start": datetime(2026, 3, 1, tzinfo=UTC)}, "leave out the UTC offset"),
        ({"start": "yesterday"}, "not a local start"),
        ({"scope": "lab-1"}, "write everything"),
        ({"scope": {}}, "say everything"),
        ({"scope": {"app": "uitkering"}}, "needs the member"),
        ({"scope": {"host": "lab-1", "member": "amsterdam"}}, "not both"),
        ({"name": "Not A Slug"}, "should match pattern"),
    ],
)
def test_invalid_windows_are_refused_on_construction(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        window(**change)
    assert words in str(info.value)


def test_valid_window_normalises(fleet: Fleet) -> None:
    w = window(rrule="rrule:freq=weekly;byday=tu", start="2026-01-06T22:00", until="2026-06-30")
    assert w.rrule == "FREQ=WEEKLY;BYDAY=TU"
    assert w.start == datetime(2026, 1, 6, 22, 0)
    assert w.until == datetime(2026, 6, 30, 23, 59, 59)  # a date means through that day
    assert window(scope="everything").scope.kind is ScopeKind.EVERYTHING
    assert str(Scope(member="amsterdam", app="uitkering")) == "amsterdam/uitkering"
    gate = Gate(fleet, [w])
    last = gate.occurrences_between(utc(2026, 6, 1), utc(2026, 12, 31))[-1]
    assert last.local_start == datetime(2026, 6, 30, 22, 0, tzinfo=AMS)


def test_until_inside_rrule_is_utc(fleet: Fleet) -> None:
    w = window(rrule="FREQ=DAILY;UNTIL=20260305T013000Z")  # 02:30 CET on 5 March
    occ = Gate(fleet, [w]).occurrences_between(utc(2026, 3, 1), utc(2026, 4, 1))
    assert [o.local_start.day for o in occ] == [1, 2, 3, 4, 5]


def test_count_limits_occurrences(fleet: Fleet) -> None:
    w = window(rrule="FREQ=WEEKLY;COUNT=3")
    assert len(Gate(fleet, [w]).occurrences_between(utc(2026, 1, 1), utc(2027, 1, 1))) == 3


def test_scopes_must_exist_in_the_fleet(fleet: Fleet) -> None:
    cases = [
        (Scope(host="lab-9"), "windows[w].scope.host: unknown host 'lab-9'"),
        (Scope(member="leiden"), "windows[w].scope.member: unknown member 'leiden'"),
        (Scope(member="amsterdam", app="parkeren"), "windows[w].scope.app: unknown app"),
    ]
    for scope, message in cases:
        with pytest.raises(FleetInvalid) as info:
            Gate(fleet, [window(scope=scope)])
        assert message in str(info.value)
    with pytest.raises(FleetInvalid, match="duplicate window name"):
        Gate(fleet, [window(), window()])


def test_yaml_errors_name_file_and_field(fleet: Fleet) -> None:
    doc = {"windows": [{"name": "x", "kind": "freeze", "scope": "everything", "rrule": "F"}]}
    with pytest.raises(FleetInvalid) as info:
        parse_windows(doc, fleet, "w.yml")
    assert str(info.value) == "w.yml: windows[x].start: required field is missing"
    doc = {"windows": [], "extra": 1}
    with pytest.raises(FleetInvalid, match=r"^w\.yml: extra: unknown field$"):
        parse_windows(doc, fleet, "w.yml")


def test_a_fleet_without_windows_file_has_no_windows(fleet: Fleet, tmp_path: Any) -> None:
    assert load_windows(tmp_path, fleet) == ()
    assert len(load_windows(LAB, fleet)) == 8


# -- expansion and DST --------------------------------------------------------------------------


def test_payment_run_freeze_is_last_three_working_days_all_day(fleet: Fleet) -> None:
    gate = Gate(fleet, load_windows(LAB, fleet))
    w = gate.window("payment-run-amsterdam")
    occ = gate.occurrences_between(utc(2026, 1, 1), utc(2027, 1, 1), [w])
    days = [o.local_start.date() for o in occ]
    assert len(days) == 36
    assert days[:3] == [date(2026, 1, 28), date(2026, 1, 29), date(2026, 1, 30)]  # 31st: Sat
    assert days[12:15] == [date(2026, 5, 27), date(2026, 5, 28), date(2026, 5, 29)]  # 31st: Sun
    assert days[-3:] == [date(2026, 12, 29), date(2026, 12, 30), date(2026, 12, 31)]
    assert all(d.weekday() < 5 for d in days)
    for o in occ:
        assert o.local_start.time() == datetime.min.time()  # local midnight, CET or CEST
        assert o.local_end - o.local_start == timedelta(days=1)
    # 28 January (CET) starts at 23:00 UTC the day before; 30 March (CEST) at 22:00 UTC.
    assert occ[0].start == utc(2026, 1, 27, 23)
    assert occ[7].start == utc(2026, 3, 29, 22)


def test_weekly_window_keeps_local_time_across_dst(fleet: Fleet) -> None:
    w = window(rrule="FREQ=WEEKLY;BYDAY=SU", start=datetime(2026, 3, 22, 22, 0))
    occ = Gate(fleet, [w]).occurrences_between(utc(2026, 3, 20), utc(2026, 4, 6))
    assert [o.start for o in occ] == [
        utc(2026, 3, 22, 21),
        utc(2026, 3, 29, 20),
        utc(2026, 4, 5, 20),
    ]
    assert {o.local_start.hour for o in occ} == {22}


def test_nonexistent_local_start_moves_forward_by_the_gap(fleet: Fleet) -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that day.
    w = window(start=datetime(2026, 3, 27, 2, 30))
    occ = Gate(fleet, [w]).occurrences_between(utc(2026, 3, 27), utc(2026, 3, 31))
    assert [o.start for o in occ] == [
        utc(2026, 3, 27, 1, 30),  # 02:30 CET
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 30),  # 02:30 "CET" = 03:30 CEST: shifted forward by one hour
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    shifted = occ[2]
    assert shifted.local_start == datetime(2026, 3, 29, 3, 30, tzinfo=AMS)
    assert shifted.local_start.tzname() == "CEST"
    assert shifted.end - shifted.start == timedelta(hours=1)


def test_ambiguous_local_start_takes_the_first_of_the_pair(fleet: Fleet) -> None:
    # 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens twice; the first (CEST) wins.
    w = window(start=datetime(2026, 10, 24, 2, 30))
    occ = Gate(fleet, [w]).occurrences_between(utc(2026, 10, 24), utc(2026, 10, 27))
    assert [o.start for o in occ] == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first 02:30; not 01:30Z
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]
    assert occ[1].local_start.tzname() == "CEST"
    assert occ[1].local_start.fold == 0


def test_durations_are_elapsed_time_across_dst(fleet: Fleet) -> None:
    w = window(start=datetime(2026, 3, 28, 0, 0), duration=timedelta(hours=4))
    gate = Gate(fleet, [w])
    spring = gate.occurrences_between(utc(2026, 3, 28, 22), utc(2026, 3, 29, 1))[0]
    assert spring.local_start == datetime(2026, 3, 29, 0, 0, tzinfo=AMS)
    assert spring.local_end == datetime(2026, 3, 29, 5, 0, tzinfo=AMS)  # 4 h elapsed: 05:00 CEST
    autumn = gate.occurrences_between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 1))[0]
    assert autumn.local_start == datetime(2026, 10, 25, 0, 0, tzinfo=AMS)
    assert autumn.local_end.hour == 3 and autumn.local_end.tzname() == "CET"


def test_hourly_rule_through_the_gap_has_no_duplicate(fleet: Fleet) -> None:
    w = window(
        rrule="FREQ=HOURLY", start=datetime(2026, 3, 29, 0, 0), duration=timedelta(minutes=30)
    )
    occ = Gate(fleet, [w]).occurrences_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    starts = [o.start for o in occ]
    assert starts == sorted(set(starts))
    assert starts == [
        utc(2026, 3, 28, 23),
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
    ]


def test_next_occurrences(fleet: Fleet) -> None:
    gate = Gate(fleet, load_windows(LAB, fleet))
    nxt = gate.next_occurrences("patch-lab-2", utc(2026, 3, 25), count=2)
    assert [o.local_start for o in nxt] == [
        datetime(2026, 3, 31, 5, 0, tzinfo=AMS),
        datetime(2026, 4, 7, 5, 0, tzinfo=AMS),
    ]
