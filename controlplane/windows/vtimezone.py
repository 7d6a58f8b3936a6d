"""Rule-based VTIMEZONE components (RFC 5545 3.6.5) derived from an IANA zone.

A calendar client converts an event's local DTSTART with the feed's VTIMEZONE, not with
its own zone database, so the component has to be right. Each observance's DTSTART (and
RDATE) is the local time of the change *in the offset before it* (TZOFFSETFROM): Amsterdam
springs forward at 02:00 CET and falls back at 03:00 CEST.

The zone's changes are found by sampling ``zoneinfo`` and narrowing each change down to
the second. When one kind of change (same offsets and name) has happened every year in the
same way until the end of the range, it becomes one observance with a yearly RRULE; what
does not fit a rule (a zone that changed its rules within the range) is listed date by
date with RDATE. The result is checked by expanding it again over the whole range and
comparing with the zone; should that ever disagree, every change is listed by date.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from icalendar import Timezone, TimezoneDaylight, TimezoneStandard, vRecur

# Sampling step: no zone has changed its offset twice within a day in modern times.
STEP = timedelta(days=1)
# Yearly rules start in 1970 (the convention of tzurl.org and most calendar servers) when
# the zone followed them through the whole range the feed needs.
RULE_EPOCH = 1970
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

State = tuple[timedelta, bool, str]  # UTC offset, is daylight time, abbreviation


@dataclass(frozen=True)
class Change:
    """One change of a zone's offset or abbreviation, at ``at`` (UTC)."""

    at: datetime
    offset_from: timedelta
    offset_to: timedelta
    dst: bool
    name: str

    @property
    def kind(self) -> tuple[timedelta, timedelta, bool, str]:
        return (self.offset_from, self.offset_to, self.dst, self.name)

    @property
    def local(self) -> datetime:
        """Wall-clock time of the change in the offset before it (naive)."""
        return (self.at + self.offset_from).replace(tzinfo=None)

    def rules(self) -> set[str]:
        """The yearly rules (BYMONTH and BYDAY or BYMONTHDAY) this change's date fits."""
        d = self.local.date()
        day = _DAYS[d.weekday()]
        last = calendar.monthrange(d.year, d.month)[1]
        return {
            f"BYMONTH={d.month};BYDAY={(d.day - 1) // 7 + 1}{day}",
            f"BYMONTH={d.month};BYDAY=-{(last - d.day) // 7 + 1}{day}",
            f"BYMONTH={d.month};BYMONTHDAY={d.day}",
        }


def _state(zone: ZoneInfo, at: datetime) -> State:
    local = at.astimezone(zone)
    offset, dst = local.utcoffset(), local.dst()
    assert offset is not None  # a ZoneInfo always answers for an aware time
    return offset, bool(dst), local.tzname() or _offset_name(offset)


def _offset_name(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[Change]:
    """Every change of ``zone`` in [start, end) (UTC-aware bounds), in order."""
    out: list[Change] = []
    at, state = start, _state(zone, start)
    while at < end:
        step = min(at + STEP, end)
        after = _state(zone, step)
        if after != state:
            lo, hi = at, step  # state(lo) is the old one, state(hi) the new one
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if _state(zone, mid) == state:
                    lo = mid
                else:
                    hi = mid
            out.append(Change(hi, state[0], after[0], after[1], after[2]))
        at, state = step, after
    return out


@dataclass(frozen=True)
class Observance:
    """One STANDARD or DAYLIGHT component: from DTSTART, by RRULE and/or RDATEs."""

    offset_from: timedelta
    offset_to: timedelta
    dst: bool
    name: str
    start: datetime  # naive local time in offset_from
    rule: str | None = None
    dates: tuple[datetime, ...] = ()

    def instants(self, end: datetime) -> list[datetime]:
        """UTC instants of this observance's onsets before ``end``."""
        local_end = (end + self.offset_from).replace(tzinfo=None)
        onsets = [self.start, *self.dates]
        if self.rule is not None:
            onsets += rrulestr(self.rule, dtstart=self.start).between(
                self.start, local_end, inc=True
            )
        return sorted({(t - self.offset_from).replace(tzinfo=UTC) for t in onsets})


def observances(zone: ZoneInfo, start: datetime, end: datetime) -> list[Observance]:
    """The observances describing ``zone`` over [start, end) (UTC-aware bounds)."""
    found = changes(zone, start, end)
    initial = _state(zone, start)
    if not found:
        offset, dst, name = initial
        epoch = datetime(RULE_EPOCH, 1, 1)
        return [Observance(offset, offset, dst, name, min(epoch, _naive(start, offset)))]
    ruled = _ruled(found, initial, start)
    if _reproduces(ruled, found, start, end):
        return ruled
    return _dated(found, initial, start)


def _naive(at: datetime, offset: timedelta) -> datetime:
    return (at + offset).replace(tzinfo=None)


def _ruled(found: Sequence[Change], initial: State, start: datetime) -> list[Observance]:
    by_kind: dict[tuple[timedelta, timedelta, bool, str], list[Change]] = defaultdict(list)
    for c in found:
        by_kind[c.kind].append(c)
    last_year = found[-1].local.year
    out: list[Observance] = []
    for (offset_from, offset_to, dst, name), these in by_kind.items():
        run, rules = _yearly_run(these)
        if run and run[-1].local.year >= last_year - 1:
            rule = "FREQ=YEARLY;" + _preferred(rules)
            clock = run[0].local.time()
            before = _first_in(rule, run[0].local.year - 1, clock) - offset_from
            if these[0] is run[0] and before.replace(tzinfo=UTC) < start:
                # Followed since the range began: state it as the usual rule since 1970.
                first = _first_in(rule, RULE_EPOCH, clock)
            else:
                first = run[0].local
            out.append(Observance(offset_from, offset_to, dst, name, first, rule))
            these = these[: len(these) - len(run)]
        if these:
            local = tuple(c.local for c in these)
            out.append(Observance(offset_from, offset_to, dst, name, local[0], None, local[1:]))
    out.extend(_base(initial, start, out))
    return sorted(out, key=lambda o: o.start)


def _yearly_run(these: Sequence[Change]) -> tuple[list[Change], set[str]]:
    """The longest tail of ``these`` that happened once a year by one rule at one time."""
    run = [these[-1]]
    rules = these[-1].rules()
    clock = these[-1].local.time()
    for c in reversed(these[:-1]):
        common = rules & c.rules()
        if c.local.year != run[0].local.year - 1 or c.local.time() != clock or not common:
            break
        run.insert(0, c)
        rules = common
    if len(run) < 2:
        return [], set()
    return run, rules


def _preferred(rules: set[str]) -> str:
    """Prefer the wording of the law: last Sunday (EU), then second Sunday (US), then a date."""

    def rank(rule: str) -> tuple[int, str]:
        if "BYDAY=-1" in rule:
            return 0, rule
        if "BYDAY=" in rule:
            return (2 if "BYDAY=-" in rule else 1), rule
        return 3, rule

    return min(rules, key=rank)


def _first_in(rule: str, year: int, clock: time) -> datetime:
    first: datetime = rrulestr(rule, dtstart=datetime.combine(datetime(year, 1, 1), clock))[0]
    return first


def _base(initial: State, start: datetime, made: Sequence[Observance]) -> list[Observance]:
    """The state in force at ``start``, when no observance covers that time yet."""
    if any(o.start <= _naive(start, o.offset_from) for o in made):
        return []
    offset, dst, name = initial
    return [Observance(offset, offset, dst, name, _naive(start, offset))]


def _dated(found: Sequence[Change], initial: State, start: datetime) -> list[Observance]:
    by_kind: dict[tuple[timedelta, timedelta, bool, str], list[datetime]] = defaultdict(list)
    for c in found:
        by_kind[c.kind].append(c.local)
    out = [
        Observance(offset_from, offset_to, dst, name, local[0], None, tuple(local[1:]))
        for (offset_from, offset_to, dst, name), local in by_kind.items()
    ]
    out.extend(_base(initial, start, out))
    return sorted(out, key=lambda o: o.start)


def _reproduces(
    made: Sequence[Observance], found: Sequence[Change], start: datetime, end: datetime
) -> bool:
    expected = [(c.at, c.offset_to, c.name) for c in found]
    produced = sorted(
        (at, o.offset_to, o.name)
        for o in made
        if o.offset_from != o.offset_to
        for at in o.instants(end)
        if start <= at < end
    )
    return produced == expected


@lru_cache(maxsize=64)
def _cached(key: str, first_year: int, last_year: int) -> tuple[Observance, ...]:
    start = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    return tuple(observances(ZoneInfo(key), start, end))


def vtimezone(key: str, first_year: int, last_year: int) -> Timezone:
    """The VTIMEZONE of IANA zone ``key``, right from 1 January ``first_year`` through
    ``last_year`` (and beyond, where the zone keeps its current rule)."""
    tz = Timezone()
    tz.add("tzid", key)
    for o in _cached(key, first_year, last_year):
        part = TimezoneDaylight() if o.dst else TimezoneStandard()
        part.add("dtstart", o.start)
        if o.rule is not None:
            part.add("rrule", vRecur.from_ical(o.rule))
        for d in o.dates:
            part.add("rdate", d)
        part.add("tzoffsetfrom", o.offset_from)
        part.add("tzoffsetto", o.offset_to)
        part.add("tzname", o.name)
        tz.add_component(part)
    return tz
