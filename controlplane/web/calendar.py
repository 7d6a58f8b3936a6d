"""``/calendar``: a month of maintenance windows and freezes, per member and host.

The month is laid out in the viewer's zone (``tz``; the page's script fills it in from the
browser, without it the configured zone is used), and every time is also given in the
configured zone (Europe/Amsterdam) when the two differ. A maintenance window that is lost
to a freeze, or that overlaps another host's window while both run the same app, is marked
with the conflict's text. ``/calendar/{member}.ics`` is the member's iCalendar feed for a
signed-in session (the API's feed wants a bearer token).

The month grid is a pure function (``month_grid``) of the occurrences and the zone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Path, Query
from fastapi.responses import HTMLResponse, Response

from controlplane.access.policy import Action
from controlplane.clock import utc_now
from controlplane.errors import InvalidInput
from controlplane.fleet.operations import show_fleet
from controlplane.schemas.windows import ConflictOut, OccurrenceOut
from controlplane.web.framework import Page, needs, page_router, render
from controlplane.windows import operations as windows_ops

router = page_router()

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MemberSlug = Annotated[str, Path(max_length=63)]


# -- the pure part ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CalEvent:
    """One occurrence of a window or freeze, [start, end) in UTC."""

    window: str
    kind: str  # maintenance | freeze
    scope: str
    start: datetime
    end: datetime
    conflicts: tuple[str, ...] = ()

    @property
    def is_freeze(self) -> bool:
        return self.kind == "freeze"


@dataclass(frozen=True)
class DayEvent:
    """An event as one day shows it: whether it starts or ends that day."""

    event: CalEvent
    starts_today: bool
    ends_today: bool


@dataclass
class Day:
    """One local day, [start, end) in UTC: 23 or 25 hours long on a change-over day."""

    day: date
    in_month: bool
    start: datetime
    end: datetime
    events: list[DayEvent] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return (self.end - self.start) / timedelta(hours=1)

    @property
    def change(self) -> str | None:
        """What a clock change does to the day, in words; None on an ordinary day."""
        if self.hours < 24:
            return f"{self.hours:g}-hour day: clocks go forward"
        if self.hours > 24:
            return f"{self.hours:g}-hour day: clocks go back"
        return None

    @property
    def conflicts(self) -> int:
        return sum(1 for e in self.events if e.event.conflicts)


def parse_month(text: str | None, zone: ZoneInfo, now: datetime) -> tuple[int, int]:
    """``2026-03`` -> (2026, 3); None: the current month in ``zone``."""
    if text is None or text == "":
        local = now.astimezone(zone)
        return local.year, local.month
    try:
        year, month = (int(part) for part in text.split("-"))
        date(year, month, 1)
    except ValueError:
        raise InvalidInput(f"month: {text!r} is not a month like 2026-03") from None
    if not 1971 <= year <= 2199:
        raise InvalidInput(f"month: {text!r} is outside 1971..2199")
    return year, month


def parse_zone(text: str | None, default: ZoneInfo) -> ZoneInfo:
    if text is None or text == "":
        return default
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"tz: {text!r} is not a time zone like Europe/Amsterdam") from None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``zone``, in UTC (a nonexistent midnight reads with
    the offset before the gap, which is the same instant as the day's first real time)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def grid_days(year: int, month: int) -> list[date]:
    """Whole weeks, Monday first, covering the month."""
    first = date(year, month, 1)
    start = first - timedelta(days=first.weekday())
    following = date(year + month // 12, month % 12 + 1, 1)
    last = following - timedelta(days=1)
    end = last + timedelta(days=6 - last.weekday())
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def grid_range(year: int, month: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC span the month's grid shows."""
    days = grid_days(year, month)
    return local_midnight(days[0], zone), local_midnight(days[-1] + timedelta(days=1), zone)


def month_grid(
    year: int, month: int, events: Iterable[CalEvent], zone: ZoneInfo
) -> list[list[Day]]:
    """The month as weeks of days in ``zone``, each with the events overlapping it,
    freezes first, then by start."""
    days = [
        Day(d, d.month == month, local_midnight(d, zone), local_midnight(d + timedelta(1), zone))
        for d in grid_days(year, month)
    ]
    ordered = sorted(events, key=lambda e: (not e.is_freeze, e.start, e.window))
    for day in days:
        for e in ordered:
            if e.start < day.end and e.end > day.start:
                day.events.append(DayEvent(e, e.start >= day.start, e.end <= day.end))
    return [days[i : i + 7] for i in range(0, len(days), 7)]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def calendar_events(
    occurrences: Sequence[OccurrenceOut], conflicts: Sequence[ConflictOut]
) -> list[CalEvent]:
    """The operations' occurrences, each with the messages of the conflicts it is in."""
    notes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c in conflicts:
        notes[(c.window, c.start_utc)].append(c.message)
    return [
        CalEvent(
            o.window,
            o.kind,
            windows_ops.scope_text(o.scope),
            _utc(o.start_utc),
            _utc(o.end_utc),
            tuple(notes.get((o.window, o.start_utc), ())),
        )
        for o in occurrences
    ]


def span_text(event: CalEvent, zone: ZoneInfo) -> str:
    """``Mon 06 Jan 05:00 to 07:00 CET``, with both dates when it crosses midnight."""
    a, b = event.start.astimezone(zone), event.end.astimezone(zone)
    tail = "%H:%M %Z" if a.date() == b.date() else "%a %d %b %H:%M %Z"
    return f"{a:%a %d %b %H:%M} to {b.strftime(tail)}"


def day_span(shown: DayEvent, day: Day, zone: ZoneInfo) -> str:
    """The part of an event on one day: ``05:00 to 07:00 CET``, ``all day``, ``from 22:00``."""
    e = shown.event
    a, b = e.start.astimezone(zone), e.end.astimezone(zone)
    if e.start <= day.start and e.end >= day.end:
        return "all day"
    if shown.starts_today and shown.ends_today:
        return f"{a:%H:%M} to {b:%H:%M %Z}"
    if shown.starts_today:
        return f"from {a:%H:%M %Z}"
    return f"until {b:%H:%M %Z}"


@dataclass(frozen=True)
class DayLine:
    """Events of one kind shown alike on a day, as one line: "Freeze, all day: a, b"."""

    is_freeze: bool
    when: str
    home_when: str | None
    windows: tuple[str, ...]
    conflicts: tuple[str, ...]


def day_lines(day: Day, zone: ZoneInfo, home: ZoneInfo | None = None) -> list[DayLine]:
    """A day's events as lines: same kind and same times together, so four members'
    payment-run freezes take one line; a conflicting occurrence keeps a line of its own."""
    lines: list[DayLine] = []
    index: dict[tuple[bool, str, str | None], int] = {}
    for shown in day.events:
        e = shown.event
        when = day_span(shown, day, zone)
        home_when = span_text(e, home) if home is not None else None
        key = (e.is_freeze, when, home_when)
        if e.conflicts or key not in index:
            if not e.conflicts:
                index[key] = len(lines)
            lines.append(DayLine(e.is_freeze, when, home_when, (e.window,), e.conflicts))
            continue
        i = index[key]
        lines[i] = DayLine(
            e.is_freeze, when, home_when, (*lines[i].windows, e.window), lines[i].conflicts
        )
    return lines


def month_shift(year: int, month: int, by: int) -> str:
    index = year * 12 + month - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# -- pages -----------------------------------------------------------------------------------


@router.get("/calendar")
def calendar_page(
    page: Annotated[Page, needs(Action.WINDOWS_READ)],
    month: Annotated[str | None, Query(max_length=7)] = None,
    tz: Annotated[str | None, Query(max_length=64)] = None,
    member: Annotated[str | None, Query(max_length=63)] = None,
) -> HTMLResponse:
    ctx, principal = page.ctx, page.principal
    home = ZoneInfo(ctx.settings.timezone)
    zone = parse_zone(tz, home)
    now = utc_now()
    year, mon = parse_month(month, zone, now)
    member = member or None
    start, end = grid_range(year, mon, zone)
    found = windows_ops.list_occurrences(ctx, principal, member, start, end, now=now)
    clashes = windows_ops.conflicts(ctx, principal, start, end, now=now).conflicts
    events = calendar_events(found.occurrences, clashes)
    weeks = month_grid(year, mon, events, zone)
    members = [m.member for m in show_fleet(ctx, principal).members]
    in_month = sorted(
        {e.event for w in weeks for d in w if d.in_month for e in d.events},
        key=lambda e: (e.start, e.window),
    )
    context: dict[str, Any] = {
        "title": f"Calendar, {date(year, mon, 1):%B %Y}",
        "weeks": weeks,
        "weekdays": WEEKDAYS,
        "events": in_month,
        "view_zone": zone,
        "home_zone": home,
        "both_zones": zone.key != home.key,
        "month": f"{year:04d}-{mon:02d}",
        "month_title": f"{date(year, mon, 1):%B %Y}",
        "previous": month_shift(year, mon, -1),
        "next": month_shift(year, mon, 1),
        "tz": tz or "",
        "member": member or "",
        "members": members,
        "span": span_text,
        "day_lines": day_lines,
        "today": now.astimezone(zone).date(),
        "conflict_count": sum(1 for e in in_month if e.conflicts),
    }
    return render(page, "web/calendar.html", context)


@router.get("/calendar/{member}.ics")
def member_feed(
    member: MemberSlug,
    page: Annotated[Page, needs(Action.WINDOWS_READ)],
    app: Annotated[str | None, Query(max_length=63)] = None,
) -> Response:
    feed = windows_ops.ics(page.ctx, page.principal, member, app or None)
    return Response(
        feed,
        media_type="text/calendar; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{member}.ics"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
