"""The iCalendar feed: valid RFC 5545 that ``icalendar`` parses back to the gate's occurrences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.windows.calendar import member_calendar, windows_calendar
from controlplane.windows.gate import Gate
from controlplane.windows.loader import load_windows
from controlplane.windows.rules import Scope, Window, WindowKind
from tests.conftest import LAB

STAMP = datetime(2026, 1, 1, 12, tzinfo=UTC)
YEAR = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def lab() -> Fleet:
    return load_fleet(LAB)


def expand(feed: bytes) -> dict[str, list[tuple[datetime, datetime]]]:
    """Every VEVENT's instances in 2026, expanded from the parsed feed alone (UTC)."""
    cal = Calendar.from_ical(feed)
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    for event in cal.walk("VEVENT"):
        start = event.decoded("dtstart")
        # DTEND gives an exact duration (RFC 5545 3.8.5.3): subtract instants, not wall times.
        length = event.decoded("dtend").astimezone(UTC) - start.astimezone(UTC)
        rule = rrulestr(event["rrule"].to_ical().decode(), dtstart=start)
        name = str(event["uid"]).split("@")[0]
        out[name] = [
            (s.astimezone(UTC), s.astimezone(UTC) + length)
            for s in rule.between(YEAR[0] - length, YEAR[1])
        ]
    return out


def test_member_feed_parses_back_to_the_gates_occurrences(lab: Fleet) -> None:
    gate = Gate(lab, load_windows(LAB, lab))
    feed = member_calendar(gate, "amsterdam", STAMP)
    cal = Calendar.from_ical(feed)
    cal.validate()
    assert cal["version"] == "2.0" and "controlplane" in str(cal["prodid"])
    assert [tz["tzid"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Amsterdam"]
    events = cal.walk("VEVENT")
    # Amsterdam's own freeze, and the patch windows of the four hosts it runs on.
    assert sorted(str(e["uid"]) for e in events) == [
        "patch-lab-1@lab.controlplane",
        "patch-lab-2@lab.controlplane",
        "patch-lab-3@lab.controlplane",
        "patch-lab-4@lab.controlplane",
        "payment-run-amsterdam@lab.controlplane",
    ]
    for e in events:
        assert e.decoded("dtstamp") == STAMP
        assert e["dtstart"].params["TZID"] == "Europe/Amsterdam"
    freeze = next(e for e in events if "payment-run" in str(e["uid"]))
    assert str(freeze["x-controlplane-kind"]) == "freeze"
    # DTSTART is the first actual occurrence: Wednesday 29 January 2025 (31st is a Friday).
    assert freeze.decoded("dtstart") == datetime(2025, 1, 29, tzinfo=ZoneInfo("Europe/Amsterdam"))

    parsed = expand(feed)
    for w in gate.windows_for_member("amsterdam"):
        expected = [(o.start, o.end) for o in gate.occurrences_between(*YEAR, [w])]
        assert parsed[w.name] == expected, w.name
    assert len(parsed["payment-run-amsterdam"]) == 36
    assert len(parsed["patch-lab-1"]) == 52


def test_dst_edges_survive_the_round_trip(lab: Fleet) -> None:
    windows = [
        Window(
            name="nightly",
            kind=WindowKind.MAINTENANCE,
            scope=Scope(member="amsterdam"),
            rrule="FREQ=DAILY",
            start=datetime(2026, 3, 1, 2, 30),
            duration=timedelta(hours=1),
            cutoff_minutes=15,
            until=datetime(2026, 11, 1, 23, 59, 59),
        ),
        Window(
            name="spring-freeze",
            kind=WindowKind.FREEZE,
            scope=Scope(member="amsterdam", app="uitkering"),
            rrule="FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
            start=datetime(2026, 1, 1, 1, 0),
            duration=timedelta(hours=4),
        ),
    ]
    gate = Gate(lab, windows)
    feed = windows_calendar(windows, "lab", STAMP).to_ical()
    Calendar.from_ical(feed).validate()
    parsed = expand(feed)
    for w in windows:
        assert parsed[w.name] == [(o.start, o.end) for o in gate.occurrences_between(*YEAR, [w])]
    nightly = dict(parsed["nightly"])
    utc = UTC
    assert len(parsed["spring-freeze"]) == 1
    assert datetime(2026, 3, 29, 1, 30, tzinfo=utc) in nightly  # 02:30 CET = 03:30 CEST
    assert datetime(2026, 10, 25, 0, 30, tzinfo=utc) in nightly  # the first 02:30 (CEST)
    assert datetime(2026, 10, 25, 1, 30, tzinfo=utc) not in nightly
    assert max(nightly) == datetime(2026, 11, 1, 1, 30, tzinfo=utc)  # UNTIL end of 1 Nov
    assert b"UNTIL=20261101T225959Z" in feed.replace(b"\r\n ", b"")
    # Four hours from 01:00 CET on the spring-forward Sunday end at 06:00 CEST.
    spring = parsed["spring-freeze"][0]
    assert spring == (datetime(2026, 3, 29, 0, tzinfo=utc), datetime(2026, 3, 29, 4, tzinfo=utc))


def test_feed_lines_are_crlf_and_folded(lab: Fleet) -> None:
    gate = Gate(lab, load_windows(LAB, lab))
    feed = member_calendar(gate, "utrecht", STAMP)
    assert feed.startswith(b"BEGIN:VCALENDAR\r\n") and feed.endswith(b"END:VCALENDAR\r\n")
    assert all(len(line) <= 75 for line in feed.split(b"\r\n"))
