"""Maintenance windows and freezes: the pure, validated model.

A window is an RFC 5545 RRULE, a start in local wall-clock time, a duration and an IANA
zone. Occurrences are computed by python-dateutil in the window's zone, never in UTC, so
"Tuesday 22:00" stays 22:00 local on both sides of a daylight-saving change. Then:

- a start that does not exist locally (02:30 on the spring-forward Sunday) is read with the
  offset from before the gap, so it moves forward by the gap (02:30 CET = 03:30 CEST);
- a start that exists twice (02:30 on the fall-back Sunday) is the first of the pair (CEST).

That is what RFC 5545 (3.3.5) prescribes and what Python's ``fold=0`` gives. Durations and
cutoffs are real elapsed time: a 24-hour window that spans a change ends at 23:00 or 01:00
local, not at midnight.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule as RRule
from dateutil.rrule import rrulestr
from pydantic import (
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as record

from controlplane.errors import FleetInvalid
from controlplane.fleet.model import HOSTNAME_RE, SLUG_RE, Fleet
from controlplane.windows.recurrence import check_parts, restart, rule_parts

DEFAULT_TIMEZONE = "Europe/Amsterdam"
STRICT = ConfigDict(extra="forbid")
# A rule whose first occurrence is further away than this is almost certainly a mistake
# (and bounding the search keeps validation fast on impossible rules like BYMONTHDAY=30 in
# February).
FIRST_OCCURRENCE_WITHIN = timedelta(days=366 * 5)
_ISO_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_SHORT_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$")

Name = Annotated[StrictStr, Field(pattern=SLUG_RE.pattern, max_length=63)]
HostName = Annotated[StrictStr, Field(pattern=HOSTNAME_RE.pattern, max_length=63)]


class WindowKind(Enum):
    """A maintenance window allows changes; a freeze forbids them and beats any window."""

    MAINTENANCE = "maintenance"
    FREEZE = "freeze"


class ScopeKind(Enum):
    EVERYTHING = "everything"
    HOST = "host"
    MEMBER = "member"
    APP = "app"  # one member's app


ScopeKey = tuple[str, ...]


@record(frozen=True, config=STRICT)
class Scope:
    """What a window covers: a host, a member, a member's app, or (all fields empty) everything."""

    host: HostName | None = None
    member: Name | None = None
    app: Name | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Scope:
        if self.host is not None and (self.member is not None or self.app is not None):
            raise ValueError("a scope is a host, or a member (with optionally an app), not both")
        if self.app is not None and self.member is None:
            raise ValueError("an app scope needs the member whose app it is")
        return self

    @classmethod
    def everything(cls) -> Scope:
        return cls()

    @property
    def kind(self) -> ScopeKind:
        if self.host is not None:
            return ScopeKind.HOST
        if self.app is not None:
            return ScopeKind.APP
        if self.member is not None:
            return ScopeKind.MEMBER
        return ScopeKind.EVERYTHING

    @property
    def key(self) -> ScopeKey:
        """A hashable key used to index windows by what they cover."""
        return scope_key(self.kind, self.host or self.member or "", self.app or "")

    def __str__(self) -> str:
        kind = self.kind
        if kind is ScopeKind.HOST:
            return f"host {self.host}"
        if kind is ScopeKind.APP:
            return f"{self.member}/{self.app}"
        if kind is ScopeKind.MEMBER:
            return f"member {self.member}"
        return "everything"

    def to_json(self) -> dict[str, str] | str:
        if self.kind is ScopeKind.EVERYTHING:
            return "everything"
        return {
            k: v
            for k, v in (("host", self.host), ("member", self.member), ("app", self.app))
            if v is not None
        }


def scope_key(kind: ScopeKind, target: str = "", app: str = "") -> ScopeKey:
    if kind is ScopeKind.EVERYTHING:
        return ("everything",)
    if kind is ScopeKind.APP:
        return ("app", target, app)
    return (kind.value, target)


def parse_duration(value: str) -> timedelta:
    """``PT4H``, ``P1D``, ``PT1H30M`` (ISO 8601 / RFC 5545) or ``4h``, ``90m``, ``1d12h``."""
    match = _ISO_DURATION.match(value) or _SHORT_DURATION.match(value)
    if not match or not any(match.groupdict().values()):
        raise ValueError(f"{value!r} is not a duration like PT4H, P1D or 4h30m")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return timedelta(
        weeks=parts.get("w", 0),
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def _local_datetime(value: Any, what: str, end_of_day: bool = False) -> datetime:
    """A naive local date-time from a YAML date, date-time or ISO string."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a local {what} like 2026-01-31T22:00") from None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(
                f"{what} is local time in the window's timezone: leave out the UTC offset"
            )
        return value
    if isinstance(value, date):
        return datetime.combine(value, time.max.replace(microsecond=0) if end_of_day else time())
    raise ValueError(f"{value!r} is not a local {what} like 2026-01-31T22:00")


@record(frozen=True, config=STRICT, kw_only=True)
class Window:
    """A recurring maintenance window or freeze, validated on construction.

    ``start`` (DTSTART) and ``until`` are naive local times in ``timezone``; ``until`` may
    also be given as UNTIL (in UTC, ending in Z) inside ``rrule``, not both.
    """

    name: Name
    kind: WindowKind
    scope: Scope
    timezone: StrictStr = DEFAULT_TIMEZONE
    start: datetime
    duration: timedelta
    rrule: StrictStr
    cutoff_minutes: Annotated[int, Field(ge=0, strict=True)] = 0
    until: datetime | None = None
    description: StrictStr = ""

    @field_validator("scope", mode="before")
    @classmethod
    def _scope(cls, value: object) -> object:
        if value == "everything":
            return Scope()
        if isinstance(value, dict) and not value:
            raise ValueError("name a host, a member, or a member and an app; or say everything")
        if isinstance(value, str):
            raise ValueError(f"{value!r}: write everything, or a mapping like {{host: lab-1}}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: object) -> datetime:
        return _local_datetime(value, "start")

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_duration(value.strip())
        if not isinstance(value, timedelta):
            raise ValueError(f"{value!r} is not a duration like PT4H, P1D or 4h30m")
        return value

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"duration must be longer than zero (got {value})")
        return value

    @field_validator("rrule")
    @classmethod
    def _rrule(cls, value: str, info: ValidationInfo) -> str:
        text = value.strip().upper().removeprefix("RRULE:").strip()
        if not text or "\n" in text or ":" in text:
            raise ValueError(f"{value!r} is not one RRULE value like FREQ=WEEKLY;BYDAY=TU")
        if "DTSTART" in text:
            raise ValueError("put the start in the window's start field, not in the rrule")
        try:
            parts = rule_parts(text)
        except ValueError as exc:
            raise ValueError(f"invalid RRULE {text!r}: {exc}") from None
        if "COUNT" in parts and "UNTIL" in parts:
            raise ValueError("an RRULE takes COUNT or UNTIL, not both (RFC 5545)")
        check_parts(parts)
        start, zone = info.data.get("start"), info.data.get("timezone")
        if start is None or zone is None:
            return text  # already reported on its own field
        try:
            rule = _build_rule(text, start.replace(tzinfo=ZoneInfo(zone)), None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid RRULE {text!r}: {exc}") from None
        probe = rule.replace(count=None, until=_limit(rule, start, zone))
        if next(iter(probe), None) is None:
            raise ValueError(f"RRULE {text!r} has no occurrence within 5 years of the start")
        return text

    @field_validator("cutoff_minutes")
    @classmethod
    def _cutoff(cls, value: int, info: ValidationInfo) -> int:
        duration = info.data.get("duration")
        if value and info.data.get("kind") is WindowKind.FREEZE:
            raise ValueError("a freeze has no cutoff")
        if duration is not None and timedelta(minutes=value) >= duration:
            raise ValueError(f"cutoff ({value} min) must be shorter than the window ({duration})")
        return value

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, value: object) -> datetime | None:
        if value is None:
            return None
        return _local_datetime(value, "until date", end_of_day=True)

    @field_validator("until")
    @classmethod
    def _until_after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        rule = str(info.data.get("rrule", ""))
        if "UNTIL=" in rule:
            raise ValueError("the rrule already has an UNTIL; give the end date once")
        if "COUNT=" in rule:
            raise ValueError("the rrule has a COUNT; give a count or an end date, not both")
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError(f"until ({value:%Y-%m-%d %H:%M}) is before the start")
        return value

    # -- derived ----------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def cutoff(self) -> timedelta:
        return timedelta(minutes=self.cutoff_minutes)

    @property
    def is_freeze(self) -> bool:
        return self.kind is WindowKind.FREEZE

    def rule(self) -> RRule:
        """The dateutil rule, yielding aware local start times (fold=0) in ``timezone``."""
        until = self.until.replace(tzinfo=self.zone) if self.until else None
        return _build_rule(self.rrule, self.start.replace(tzinfo=self.zone), until)

    def rule_from(self, at: datetime) -> tuple[RRule, datetime | None]:
        """The rule restarted at a period boundary at or before ``at``, and the restart
        (aware, local; None: at ``start``). From there on it yields exactly this window's
        occurrences, so expanding near ``at`` costs the same in any year."""
        rule = self.rule()
        moved = restart(rule, rule_parts(self.rrule), self.start.replace(tzinfo=self.zone), at)
        return (rule, None) if moved is None else moved


def _build_rule(text: str, dtstart: datetime, until: datetime | None) -> RRule:
    rule = rrulestr(text, dtstart=dtstart)
    if not isinstance(rule, RRule):
        raise ValueError("expected a single RRULE")
    return rule.replace(until=until) if until is not None else rule


def _limit(rule: RRule, start: datetime, zone: str) -> datetime:
    # The probe must not outlive the rule's own UNTIL; naive and aware UNTILs differ.
    limit = (start + FIRST_OCCURRENCE_WITHIN).replace(tzinfo=ZoneInfo(zone))
    own = getattr(rule, "_until", None)
    return min(limit, own) if isinstance(own, datetime) else limit


@dataclass(frozen=True, repr=False, slots=True)
class Occurrence:
    """One occurrence of a window: ``start`` and ``end`` are UTC, half-open [start, end)."""

    window: Window
    start: datetime

    def __repr__(self) -> str:
        return f"Occurrence({self.window.name}, {utc_text(self.start)} .. {utc_text(self.end)})"

    @property
    def end(self) -> datetime:
        return self.start + self.window.duration

    @property
    def cutoff_at(self) -> datetime:
        """No new work starts at or after this instant (the end when there is no cutoff)."""
        return self.end - self.window.cutoff

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(self.window.zone)

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(self.window.zone)

    def to_json(self) -> dict[str, Any]:
        w = self.window
        return {
            "window": w.name,
            "kind": w.kind.value,
            "scope": w.scope.to_json(),
            "timezone": w.timezone,
            "start_local": self.local_start.isoformat(),
            "end_local": self.local_end.isoformat(),
            "start_utc": utc_text(self.start),
            "end_utc": utc_text(self.end),
            "cutoff_utc": utc_text(self.cutoff_at) if w.cutoff_minutes else None,
        }


def utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_windows(windows: Iterable[Window], fleet: Fleet) -> tuple[Window, ...]:
    """Unique names, and every scope names a host, member or member's app in the fleet."""
    out: list[Window] = []
    seen: set[str] = set()
    for w in windows:
        where = f"windows[{w.name}]"
        if w.name in seen:
            raise FleetInvalid(f"{where}.name", f"duplicate window name {w.name!r}")
        seen.add(w.name)
        s = w.scope
        if s.host is not None and s.host not in {h.name for h in fleet.hosts}:
            raise FleetInvalid(f"{where}.scope.host", f"unknown host {s.host!r}")
        if s.member is not None and s.member not in {m.slug for m in fleet.members}:
            raise FleetInvalid(f"{where}.scope.member", f"unknown member {s.member!r}")
        if s.app is not None:
            if s.app not in {a.slug for a in fleet.apps}:
                raise FleetInvalid(f"{where}.scope.app", f"unknown app {s.app!r}")
            if s.app not in {sa.app for sa in fleet.stack(str(s.member)).apps}:
                raise FleetInvalid(
                    f"{where}.scope.app", f"member {s.member} does not run app {s.app!r}"
                )
        out.append(w)
    return tuple(out)
