"""The .ics feed read by clients that trust its VTIMEZONE, not their own zone database.

python-dateutil's ``tzical`` and ``vobject`` (which builds on it) convert every instance
with the feed's VTIMEZONE alone. Both must land each instance on the same UTC instant as
``controlplane windows list``: in winter, in summer, and on both change-over Sundays. A
VTIMEZONE whose DAYLIGHT onset is at the wrong local hour, or that lists change dates only
for a few years, puts summer events an hour off in these clients.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import vobject  # type: ignore[import-untyped]
from dateutil import tz
from dateutil.rrule import rrulestr
from icalendar import Calendar, Component

from controlplane.cli import run
from controlplane.windows.vtimezone import changes, vtimezone
from tests.conftest import LAB

# Amsterdam, New York (another rule, other dates) and Sydney (summer at New Year).
EXTRA = """
  - name: evening
    kind: maintenance
    scope: {member: amsterdam}
    rrule: FREQ=DAILY
    start: 2026-01-01T22:00
    duration: PT2H
  - name: change-over
    kind: freeze
    scope: {member: amsterdam}
    rrule: FREQ=YEARLY;BYMONTH=3,10;BYDAY=-1SU
    start: 2026-01-01T01:30
    duration: PT4H
  - name: twice-at-0230
    kind: maintenance
    scope: {member: amsterdam}
    rrule: FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
    start: 2026-01-01T02:30
    duration: PT1H
  - name: new-york
    kind: maintenance
    scope: {member: amsterdam}
    timezone: America/New_York
    rrule: FREQ=DAILY
    start: 2026-01-01T01:30
    duration: PT1H
  - name: sydney
    kind: maintenance
    scope: {member: amsterdam}
    timezone: Australia/Sydney
    rrule: FREQ=WEEKLY;BYDAY=SU
    start: 2026-01-04T04:00
    duration: PT1H
"""
FROM, TO = "2026-01-01", "2027-01-01"
RANGE = (datetime(2025, 12, 31, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC))

Spans = dict[str, set[tuple[datetime, datetime]]]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("ics") / "fleet"
    shutil.copytree(LAB, target)
    with (target / "windows.yml").open("a") as f:
        f.write(EXTRA)
    return target


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = run(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.fixture
def listed(fleet: Path, capsys: pytest.CaptureFixture[str]) -> Spans:
    """What ``windows list`` says for amsterdam in 2026, per window, in UTC."""
    args = ["windows", "list", "--member", "amsterdam", "--from", FROM, "--to", TO, "--json"]
    out: Spans = {}
    for o in json.loads(cli([*args, "--fleet", str(fleet)], capsys))["occurrences"]:
        start = datetime.fromisoformat(o["start_utc"])
        out.setdefault(o["window"], set()).add((start, datetime.fromisoformat(o["end_utc"])))
    return out


@pytest.fixture
def feed(fleet: Path, capsys: pytest.CaptureFixture[str]) -> str:
    return cli(["windows", "ics", "amsterdam", "--fleet", str(fleet)], capsys)


def in_2026(spans: Spans) -> Spans:
    lo, hi = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    return {k: {(s, e) for s, e in v if e > lo and s < hi} for k, v in spans.items()}


def tzical_read(feed: str) -> Spans:
    """Expand each VEVENT with dateutil alone: tzical zones, rrulestr rules."""
    zones = tz.tzical(io.StringIO(feed))

    def instant(event: Component, prop: str) -> datetime:
        # The raw wall time and its TZID, converted with the feed's VTIMEZONE only.
        value: Any = event[prop]
        if "TZID" not in value.params:
            return cast(datetime, value.dt)  # given in UTC
        return cast(datetime, value.dt).replace(tzinfo=zones.get(value.params["TZID"]))

    out: Spans = {}
    for event in Calendar.from_ical(feed).walk("VEVENT"):
        start = instant(event, "dtstart")
        length = instant(event, "dtend").astimezone(UTC) - start.astimezone(UTC)
        recur: Any = event["rrule"]
        rule = rrulestr(recur.to_ical().decode(), dtstart=start)
        name = str(event["uid"]).split("@")[0]
        out[name] = {
            (s.astimezone(UTC), s.astimezone(UTC) + length)
            for s in rule.between(RANGE[0], RANGE[1])
        }
    return in_2026(out)


def vobject_read(feed: str) -> Spans:
    out: Spans = {}
    for event in vobject.readOne(feed).vevent_list:
        start = event.dtstart.value
        length = event.dtend.value.astimezone(UTC) - start.astimezone(UTC)
        rules = event.getrruleset(addRDate=True)
        name = event.uid.value.split("@")[0]
        out[name] = {
            (s.astimezone(UTC), s.astimezone(UTC) + length)
            for s in rules.between(RANGE[0], RANGE[1])
        }
    return in_2026(out)


@pytest.mark.parametrize("reader", [tzical_read, vobject_read], ids=["tzical", "vobject"])
def test_readers_place_every_instance_where_windows_list_does(
    reader: Callable[[str], Spans], feed: str, listed: Spans
) -> None:
    parsed = reader(feed)
    assert set(parsed) == set(listed)
    for name, spans in listed.items():
        assert parsed[name] == spans, name
    utc = UTC
    evening = listed["evening"]
    assert (datetime(2026, 1, 15, 21, tzinfo=utc), datetime(2026, 1, 15, 23, tzinfo=utc)) in evening
    assert (datetime(2026, 7, 15, 20, tzinfo=utc), datetime(2026, 7, 15, 22, tzinfo=utc)) in evening
    # 01:30 CET on the spring Sunday, 4 h of real time: ends 06:30 CEST.
    spring = (datetime(2026, 3, 29, 0, 30, tzinfo=utc), datetime(2026, 3, 29, 4, 30, tzinfo=utc))
    autumn = (datetime(2026, 10, 24, 23, 30, tzinfo=utc), datetime(2026, 10, 25, 3, 30, tzinfo=utc))
    assert listed["change-over"] == {spring, autumn}
    # 02:30 happens twice on 25 October: the first one, still CEST.
    assert {s for s, _ in listed["twice-at-0230"]} == {datetime(2026, 10, 25, 0, 30, tzinfo=utc)}
    new_york = {s for s, _ in listed["new-york"]}
    assert datetime(2026, 3, 8, 6, 30, tzinfo=utc) in new_york  # EST, the morning of the change
    assert datetime(2026, 3, 9, 5, 30, tzinfo=utc) in new_york  # EDT
    assert datetime(2026, 11, 1, 5, 30, tzinfo=utc) in new_york  # the first 01:30 (EDT)
    sydney = {s for s, _ in listed["sydney"]}
    assert datetime(2026, 1, 3, 17, tzinfo=utc) in sydney  # AEDT, +11
    assert datetime(2026, 7, 4, 18, tzinfo=utc) in sydney  # AEST, +10


def test_vtimezone_is_the_rule_not_a_list_of_dates(feed: str) -> None:
    zones = {str(z["tzid"]): z for z in Calendar.from_ical(feed).walk("VTIMEZONE")}
    assert set(zones) == {"Europe/Amsterdam", "America/New_York", "Australia/Sydney"}
    amsterdam = zones["Europe/Amsterdam"].to_ical().decode().replace("\r\n", "\n")
    # RFC 5545: an onset is local time in the offset before it (TZOFFSETFROM).
    assert (
        "BEGIN:DAYLIGHT\nDTSTART:19700329T020000\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\n"
        "TZNAME:CEST\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nEND:DAYLIGHT\n"
    ) in amsterdam
    assert (
        "BEGIN:STANDARD\nDTSTART:19701025T030000\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\n"
        "TZNAME:CET\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nEND:STANDARD\n"
    ) in amsterdam
    assert "RDATE" not in feed
    # The rule holds beyond any horizon a list of dates would have: summer 2080.
    zone = tz.tzical(io.StringIO(feed)).get("Europe/Amsterdam")
    assert datetime(2080, 7, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=2)
    assert datetime(2080, 12, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("key", "first", "last"),
    [
        ("Europe/Amsterdam", 2024, 2060),
        ("America/New_York", 2024, 2040),
        ("Australia/Sydney", 2024, 2040),  # summer at New Year
        ("Asia/Kolkata", 2024, 2030),  # no changes at all
        ("America/Sao_Paulo", 2016, 2024),  # daylight time abolished in 2019
        ("Europe/Moscow", 2009, 2016),  # permanent summer time 2011, back in 2014
        ("Africa/Casablanca", 2024, 2030),  # moves with Ramadan: no yearly rule
    ],
)
def test_vtimezone_matches_the_zone_at_every_change(key: str, first: int, last: int) -> None:
    """Both readers give the zone's own offset around every change and in between."""
    text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
    text += vtimezone(key, first, last).to_ical().decode() + "END:VCALENDAR\r\n"
    readers = {
        "tzical": tz.tzical(io.StringIO(text)).get(key),
        "vobject": vobject.readOne(text).vtimezone.gettzinfo(),
    }
    zone = ZoneInfo(key)
    lo, hi = datetime(first, 1, 1, tzinfo=UTC), datetime(last + 1, 1, 1, tzinfo=UTC)
    moments = {lo + timedelta(days=d, hours=12) for d in range(0, (hi - lo).days, 7)}
    for c in changes(zone, lo, hi):
        moments |= {c.at - timedelta(seconds=1), c.at, c.at + timedelta(hours=1)}
    for at in sorted(moments):
        local = at.astimezone(zone)  # fold says which of a repeated hour it is
        for name, reader in readers.items():
            assert local.replace(tzinfo=reader).utcoffset() == local.utcoffset(), (name, at)
