"""Which RRULE texts a window may use, and rules restarted near a moment to keep work bounded.

Two things keep the cost of a window independent of its input and of the date:

- **At most once an hour.** ``check_parts`` refuses a repeated rule part (``FREQ=HOURLY;
  FREQ=SECONDLY`` would otherwise let dateutil keep the last one), ``FREQ=MINUTELY`` and
  ``SECONDLY``, and more than one ``BYMINUTE`` or ``BYSECOND`` value: with one minute and
  one second, every occurrence sits at the same minute and second of its hour, so two can
  never fall in the same hour, whatever the frequency and the other parts say. ``COUNT``
  is capped, since a counted rule must always be expanded from its first occurrence.
- **Restarting near the moment asked about.** dateutil expands a rule from its DTSTART, so
  finding the occurrence of 2036 of a rule that started in 2026 walks ten years of them.
  ``restart`` builds the same rule with DTSTART moved to the start of a recurrence period
  (a year, month, week, day or hour, counted in INTERVALs from the original start) at or
  before the moment, and with every rule part dateutil would have taken from the original
  DTSTART written out. From that period on both rules give the same occurrences, because
  dateutil builds each period from its own calendar (the whole year, month, week from WKST,
  day or hour) and BYSETPOS picks within a period.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any

from dateutil.rrule import rrule as RRule

TOO_FREQUENT = ("MINUTELY", "SECONDLY")
# A counted rule is expanded from its start every time; this keeps that bounded.
MAX_COUNT = 10_000
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# Parts from which dateutil derives a YEARLY, MONTHLY or WEEKLY rule's days when all are absent.
_DAY_PARTS = frozenset({"BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "BYEASTER"})


def rule_parts(text: str) -> dict[str, str]:
    """The ``KEY=VALUE`` parts of an upper-cased RRULE value; each key at most once."""
    parts: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{item!r} is not a rule part like FREQ=WEEKLY")
        if key in parts:
            raise ValueError(f"{key} is given twice; give each rule part once")
        parts[key] = value
    return parts


def check_parts(parts: Mapping[str, str]) -> None:
    """Refuse rules that can start a window more than once an hour, or count too far."""
    freq = parts.get("FREQ")
    if freq is None:
        raise ValueError("the RRULE has no FREQ (FREQ=WEEKLY, for example)")
    if freq in TOO_FREQUENT:
        raise ValueError(f"FREQ={freq} is too frequent for a window; use HOURLY or less often")
    for key in ("BYMINUTE", "BYSECOND"):
        values = parts.get(key)
        distinct = {int(v) if v.isdigit() else v for v in (values or "").split(",") if v}
        if len(distinct) > 1:
            raise ValueError(
                f"{key}={values} starts a window more than once an hour; give one value"
            )
    interval = parts.get("INTERVAL", "1")
    if not interval.isdigit() or int(interval) < 1:
        raise ValueError(f"INTERVAL={interval} must be a whole number of at least 1")
    count = parts.get("COUNT")
    if count is not None and count.isdigit() and int(count) > MAX_COUNT:
        raise ValueError(f"COUNT={count} is more than {MAX_COUNT} occurrences")


def restart(
    rule: RRule, parts: Mapping[str, str], dtstart: datetime, at: datetime
) -> tuple[RRule, datetime] | None:
    """``rule`` restarted at the beginning of the recurrence period holding ``at``.

    ``dtstart`` is the rule's aware local start and ``at`` an aware moment. Returns the new
    rule and its start (aware, local), which yields exactly the original's occurrences from
    that start on; or None when the rule cannot or need not move (a COUNT counts from the
    original start; ``at`` lies in the first period or before it).
    """
    if "COUNT" in parts or "FREQ" not in parts:
        return None
    zone = dtstart.tzinfo
    d = dtstart.replace(tzinfo=None)
    t = at.astimezone(zone).replace(tzinfo=None)
    anchor = _period_start(parts["FREQ"], int(parts.get("INTERVAL", "1")), _wkst(parts), d, t)
    if anchor is None or anchor <= d:
        return None
    moved: RRule = rule.replace(dtstart=anchor.replace(tzinfo=zone), **_defaults(parts, d))
    return moved, anchor.replace(tzinfo=zone)


def _wkst(parts: Mapping[str, str]) -> int:
    value = parts.get("WKST")
    # dateutil's own default when WKST is absent.
    return _WEEKDAYS.index(value) if value in _WEEKDAYS else calendar.firstweekday()


def _period_start(freq: str, n: int, wkst: int, d: datetime, t: datetime) -> datetime | None:
    """The start of the latest period, in steps of ``n`` from ``d``'s, at or before ``t``."""
    if n < 1:
        return None
    if freq == "YEARLY":
        return datetime(d.year + (t.year - d.year) // n * n, 1, 1)
    if freq == "MONTHLY":
        first = d.year * 12 + d.month - 1
        month = first + ((t.year * 12 + t.month - 1) - first) // n * n
        return datetime(month // 12, month % 12 + 1, 1)
    if freq == "WEEKLY":
        d_week = d.date() - timedelta(days=(d.weekday() - wkst) % 7)
        t_week = t.date() - timedelta(days=(t.weekday() - wkst) % 7)
        weeks = (t_week - d_week).days // 7 // n * n
        return datetime.combine(d_week + timedelta(weeks=weeks), time())
    if freq == "DAILY":
        days = (t.date() - d.date()).days // n * n
        return datetime.combine(d.date() + timedelta(days=days), time())
    if freq == "HOURLY":
        hour = d.replace(minute=0, second=0, microsecond=0)
        return hour + timedelta(hours=(t - hour) // timedelta(hours=1) // n * n)
    return None


def _defaults(parts: Mapping[str, str], d: datetime) -> dict[str, Any]:
    """The rule parts dateutil fills in from DTSTART when they are absent, written out."""
    freq = parts["FREQ"]
    out: dict[str, Any] = {}
    if not _DAY_PARTS & parts.keys():
        if freq == "YEARLY":
            if "BYMONTH" not in parts:
                out["bymonth"] = d.month
            out["bymonthday"] = d.day
        elif freq == "MONTHLY":
            out["bymonthday"] = d.day
        elif freq == "WEEKLY":
            out["byweekday"] = d.weekday()
    if "BYHOUR" not in parts and freq != "HOURLY":
        out["byhour"] = d.hour
    if "BYMINUTE" not in parts:
        out["byminute"] = d.minute
    if "BYSECOND" not in parts:
        out["bysecond"] = d.second
    return out
