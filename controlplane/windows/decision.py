"""The gate's answer: a frozen ``Decision`` with its verdict, reason and occurrences."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from controlplane.errors import GateClosed, InvalidInput
from controlplane.fleet.model import DeployPolicy
from controlplane.windows.rules import Occurrence, utc_text


class Verdict(Enum):
    ALLOWED = "allowed"
    REFUSED = "refused"


class Reason(Enum):
    IN_WINDOW = "in-window"  # every touched instance is inside an open window
    NO_FREEZE = "no-freeze"  # avoid-freezes, and no freeze applies
    FREEZE = "freeze"
    NO_WINDOW = "no-window"
    CUTOFF = "cutoff"  # a window is open but past its cutoff
    EMERGENCY = "emergency"  # refused, but overridden


@dataclass(frozen=True)
class Decision:
    """The gate's answer. ``windows`` are the open maintenance windows that apply."""

    verdict: Verdict
    reason: Reason
    message: str
    at: datetime
    policy: DeployPolicy
    member: str | None
    app: str | None
    host: str | None  # set for host-level work
    hosts: tuple[str, ...]  # the hosts the change touches
    freezes: tuple[Occurrence, ...]
    windows: tuple[Occurrence, ...]
    next_allowed: datetime | None  # ``at`` when allowed; None: nothing within the horizon
    closes_at: datetime | None  # when allowed: the next cutoff or freeze, if one is known
    emergency_reason: str | None = None
    overridden: Reason | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED

    def raise_if_refused(self) -> Decision:
        """Return self when allowed; raise ``GateClosed`` (a ``Refused``) otherwise."""
        if not self.allowed:
            raise GateClosed(self.message, self)
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.verdict.value,
            "allowed": self.allowed,
            "reason": self.reason.value,
            "message": self.message,
            "at": utc_text(self.at),
            "member": self.member,
            "app": self.app,
            "host": self.host,
            "hosts": list(self.hosts),
            "policy": self.policy.value,
            "freezes": [o.to_json() for o in self.freezes],
            "windows": [o.to_json() for o in self.windows],
            "next_allowed": utc_text(self.next_allowed) if self.next_allowed else None,
            "closes_at": utc_text(self.closes_at) if self.closes_at else None,
            "emergency_reason": self.emergency_reason,
            "overridden": self.overridden.value if self.overridden else None,
        }


def when(at: datetime, zone: ZoneInfo) -> str:
    """Local time with zone abbreviation, for messages."""
    return f"{at.astimezone(zone):%Y-%m-%d %H:%M %Z}"


def span(o: Occurrence) -> str:
    return f"{when(o.start, o.window.zone)} to {when(o.end, o.window.zone)}"


def few(items: list[str], shown: int = 3) -> str:
    """A readable list for a one-line message: the first few, then how many more."""
    if len(items) <= shown + 1:
        return ", ".join(items)
    return ", ".join(items[:shown]) + f" and {len(items) - shown} more"


def override(decision: Decision, emergency_reason: str | None) -> Decision:
    """Apply an emergency override: a refusal becomes allowed, naming what it overrode."""
    if emergency_reason is None:
        return decision
    reason = emergency_reason.strip()
    if not reason:
        raise InvalidInput("emergency_reason: say why the gate is being overridden")
    if decision.allowed:
        return replace(decision, emergency_reason=reason)
    return replace(
        decision,
        verdict=Verdict.ALLOWED,
        reason=Reason.EMERGENCY,
        message=f"EMERGENCY OVERRIDE ({reason}); the gate said: {decision.message}",
        next_allowed=decision.at,
        emergency_reason=reason,
        overridden=decision.reason,
    )
