"""iCalendar (RFC 5545) feeds of windows and freezes, built with the ``icalendar`` library.

One VEVENT per window, recurring by its RRULE, with DTSTART in the window's zone (TZID)
and the matching VTIMEZONE, so a calendar client expands it exactly as the gate does:
RFC 5545 reads a nonexistent local time with the offset before the gap and takes the
first of an ambiguous pair, which is our documented choice. DTSTART is the first actual
occurrence (RFC 5545 leaves a DTSTART that does not match the rule undefined) and the
length is given as DTEND, which RFC 5545 applies as an exact duration to every instance,
matching our elapsed-time durations (a DURATION of P1D would be a nominal day instead).

The VTIMEZONEs are rule-based where the zone has a rule (see ``vtimezone``): clients that
trust the feed's definition rather than their own zone database (vobject, dateutil's
``tzical``, Outlook) then place every instance at the same instant as the gate.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from icalendar import Calendar, Event, vRecur

from controlplane import __version__
from controlplane.windows.gate import Gate
from controlplane.windows.rules import Window, WindowKind
from controlplane.windows.vtimezone import vtimezone

PRODID = f"-//Sociaal Coop//controlplane {__version__}//EN"
# Zones without a yearly rule are listed change by change this many years past the stamp.
ZONE_YEARS = 30


def window_event(window: Window, fleet: str, stamp: datetime) -> Event | None:
    """The recurring VEVENT of one window; None when it has no occurrence left."""
    first = next(iter(window.rule()), None)
    if first is None:
        return None
    end = (first.astimezone(UTC) + window.duration).astimezone(window.zone)
    kind = "Freeze" if window.kind is WindowKind.FREEZE else "Maintenance"
    event = Event()
    event.add("uid", f"{window.name}@{fleet}.controlplane")
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("summary", f"{kind}: {window.name} ({window.scope})")
    event.add("dtstart", first)
    # An end in the repeated hour of a fall-back night would read as the first of the pair,
    # a wrong (even empty) length: give that end in UTC, as RFC 5545 allows.
    event.add("dtend", end.astimezone(UTC) if end.fold else end)
    recur = vRecur.from_ical(window.rrule)
    if window.until is not None:
        # With a TZID on DTSTART, RFC 5545 wants UNTIL in UTC.
        recur["UNTIL"] = [window.until.replace(tzinfo=window.zone).astimezone(UTC)]
    event.add("rrule", recur)
    description = window.description or f"{kind} window for {window.scope}."
    if window.cutoff_minutes:
        description += f" No new work starts in the last {window.cutoff_minutes} minutes."
    event.add("description", description)
    event.add("categories", [window.kind.value.upper()])
    # Freezes block time; maintenance windows are an opportunity, not a busy slot.
    event.add("transp", "OPAQUE" if window.kind is WindowKind.FREEZE else "TRANSPARENT")
    event.add("x-controlplane-kind", window.kind.value)
    event.add("x-controlplane-scope", str(window.scope))
    return event


def windows_calendar(
    windows: Iterable[Window], fleet: str, stamp: datetime, name: str | None = None
) -> Calendar:
    """A VCALENDAR with one recurring event per window and the VTIMEZONEs they use."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if name:
        cal.add("x-wr-calname", name)
    events: list[Event] = []
    zones: dict[str, int] = {}  # zone -> earliest year an event starts in it
    for w in windows:
        event = window_event(w, fleet, stamp)
        if event is not None:
            events.append(event)
            year = event.decoded("dtstart").year
            zones[w.timezone] = min(year, zones.get(w.timezone, year))
    for key, year in zones.items():
        # From the year before: an instance's end may look back across New Year.
        cal.add_component(vtimezone(key, year - 1, max(year, stamp.year) + ZONE_YEARS))
    for event in events:
        cal.add_component(event)
    return cal


def member_calendar(gate: Gate, member: str, stamp: datetime, app: str | None = None) -> bytes:
    """The iCalendar feed of every window and freeze that gates ``member``'s changes."""
    windows = gate.windows_for_member(member, app)
    title = f"{member} maintenance windows and freezes ({gate.fleet.name})"
    feed: bytes = windows_calendar(windows, gate.fleet.name, stamp, title).to_ical()
    return feed
