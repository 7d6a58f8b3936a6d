"""Events, built from the durable records, and which targets they go to (pure).

An ``Event`` has a ``key`` that names it for good (``run:<id>``, ``audit:<hash>``,
``window.opened:<window>:<start>``): a delivery is unique per target and key, so seeing
the same record twice never sends it twice. ``members`` are the members the event
concerns: a run's member, or the members placed on the hosts it touched; a window's
member, the members on its host, or every member. A target with a member filter hears
about an event only when the two share a member, and its payload names only those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.audit.chain import AuditEntry
from controlplane.clock import as_utc
from controlplane.fleet.model import Fleet
from controlplane.notify.config import EventType, Target
from controlplane.windows.rules import Occurrence, ScopeKind

ERROR_CHARS = 500
RUNS_PATH = "/api/v1/runs/"
RUN_ID_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Event:
    type: EventType
    key: str
    at: datetime
    members: frozenset[str]
    data: Mapping[str, Any]
    status: str | None = None  # a run's status, for targets that filter on it
    member: str | None = field(default=None)  # the one member it belongs to, if any

    def payload(self, members: Iterable[str] | None = None) -> dict[str, Any]:
        """The body: ``{"type", "timestamp", "data"}``; ``data.members`` is narrowed to
        ``members`` when the target filters on members."""
        shown = self.members if members is None else self.members & set(members)
        return {
            "type": self.type.value,
            "timestamp": iso(self.at),
            "data": {**self.data, "members": sorted(shown)},
        }


def iso(at: datetime) -> str:
    return as_utc(at).isoformat().replace("+00:00", "Z")


def _opt_iso(at: datetime | None) -> str | None:
    return None if at is None else iso(at)


def matches(target: Target, event: Event) -> bool:
    if event.type not in target.events:
        return False
    if target.members is not None and not event.members & set(target.members):
        return False
    statuses = target.run_statuses
    if event.type is EventType.RUN_FINISHED and statuses is not None:
        return event.status in statuses
    return True


def members_on(fleet: Fleet, hosts: Iterable[str]) -> frozenset[str]:
    wanted = set(hosts)
    return frozenset(i.member for i in fleet.instances() if i.host in wanted)


def run_finished(row: Mapping[str, Any], fleet: Fleet) -> Event:
    """A finished run, from its ``runs`` row (not a skipped one: see maintenance.skipped)."""
    member = row["member"]
    hosts = list(row["hosts"] or [])
    members = frozenset({member}) if member else members_on(fleet, hosts)
    error = row["error"]
    options = row["options"] or {}
    finished = as_utc(row["finished_at"])
    return Event(
        type=EventType.RUN_FINISHED,
        key=f"run:{row['id']}",
        at=finished,
        members=members,
        member=member,
        status=row["status"],
        data={
            "run": row["id"],
            "kind": row["kind"],
            "status": row["status"],
            "check": bool(options.get("check", False)),
            "member": member,
            "app": row["app"],
            "version": row["version"],
            "hosts": hosts,
            "started_by": row["started_by"],
            "reason": row["reason"],
            "error": None if error is None else error[:ERROR_CHARS],
            "created_at": _opt_iso(row["created_at"]),
            "started_at": _opt_iso(row["started_at"]),
            "finished_at": iso(finished),
            "url": RUNS_PATH + row["id"],
        },
    )


def from_audit(entry: AuditEntry, fleet: Fleet) -> Event | None:
    """An emergency override or a skipped maintenance job; None for any other entry."""
    detail = dict(entry.detail)
    hosts = [str(h) for h in detail.get("hosts", [])]
    members = frozenset({entry.member}) if entry.member else members_on(fleet, hosts)
    # The target is a run id, or for a missed queued deploy its job (``deploy:<id>``).
    run = entry.target if entry.target and RUN_ID_RE.fullmatch(entry.target) else None
    common = {
        "member": entry.member,
        "actor": entry.actor,
        "run": run,
        "kind": detail.get("kind"),
        "app": detail.get("app"),
        "version": detail.get("version"),
        "hosts": hosts,
        "url": None if run is None else RUNS_PATH + run,
    }
    if entry.action == "emergency_override":
        if entry.outcome == "refused":  # a refused attempt overrode nothing
            return None
        data = {**common, "reason": entry.reason, "action": detail.get("action")}
        data["gate"] = detail.get("gate")
        kind = EventType.EMERGENCY_OVERRIDE
    elif entry.action == "maintenance_skipped":
        data = {
            **common,
            "job": detail.get("job") or (entry.target if run is None else None),
            "window": detail.get("window"),
            "occurrence": detail.get("occurrence"),
            "outcome": entry.outcome,
            "why": detail.get("why") or detail.get("refused"),
        }
        kind = EventType.MAINTENANCE_SKIPPED
    else:
        return None
    return Event(
        type=kind,
        key=f"audit:{entry.hash}",
        at=entry.at,
        members=members,
        member=entry.member,
        data=data,
    )


def window_edges(
    occurrences: Iterable[Occurrence], after: datetime, until: datetime, fleet: Fleet
) -> list[Event]:
    """``window.opened`` for each start and ``window.closed`` for each end in
    (``after``, ``until``]."""
    out: list[Event] = []
    for occ in occurrences:
        edges = ((EventType.WINDOW_OPENED, occ.start), (EventType.WINDOW_CLOSED, occ.end))
        for kind, edge in edges:
            if after < edge <= until:
                out.append(_window_event(kind, occ, edge, fleet))
    out.sort(key=lambda e: (e.at, e.key))
    return out


def _window_event(kind: EventType, occ: Occurrence, edge: datetime, fleet: Fleet) -> Event:
    scope = occ.window.scope
    if scope.kind is ScopeKind.EVERYTHING:
        members = frozenset(m.slug for m in fleet.members)
    elif scope.kind is ScopeKind.HOST:
        members = members_on(fleet, [str(scope.host)])
    else:
        members = frozenset({str(scope.member)})
    data = occ.to_json()
    data["description"] = occ.window.description
    return Event(
        type=kind,
        key=f"{kind.value}:{occ.window.name}:{iso(occ.start)}",
        at=edge,
        members=members,
        member=str(scope.member) if scope.member is not None else None,
        data=data,
    )
