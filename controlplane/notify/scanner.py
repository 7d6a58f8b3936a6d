"""Turn what the durable records say happened into deliveries (the outbox's producer).

Each scan looks at runs that finished, audit entries (emergency overrides, skipped
maintenance) and window edges since the stored watermark, and adds one delivery per
matching target and event. Every path that ends a run writes the run's row, so the engine,
recovery, a cancel of a queued run and a CLI run while ``serve`` was down are all seen,
with no hook in the engine.

Runs and audit entries are looked for from ``LOOKBACK`` before the watermark: a row
written by a transaction that committed late, or by a node whose clock lags, is still
seen, and the unique (target, event key) keeps it from being sent twice. After a long
stop only the last ``MAX_CATCH_UP`` is looked at: older news is no longer worth sending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from controlplane.audit.store import entry_from_row
from controlplane.clock import utc_now
from controlplane.fleet.model import Fleet
from controlplane.notify import events
from controlplane.notify.config import EventType, Target
from controlplane.notify.events import Event
from controlplane.notify.store import DeliveryStore, NewDelivery
from controlplane.store.schema import audit_log, runs
from controlplane.windows.gate import Gate

log = logging.getLogger(__name__)

WATERMARK = "scan"
LOOKBACK = timedelta(minutes=10)
MAX_CATCH_UP = timedelta(hours=24)
_NOT_FINISHED = ("queued", "running", "skipped")
_AUDITED = ("emergency_override", "maintenance_skipped")
_WINDOW_EVENTS = {EventType.WINDOW_OPENED, EventType.WINDOW_CLOSED}


class Scanner:
    def __init__(
        self,
        engine: Engine,
        fleet: Fleet,
        gate: Gate,
        targets: Sequence[Target],
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.fleet = fleet
        self.gate = gate
        self.targets = tuple(targets)
        self.clock = clock
        self.store = DeliveryStore(engine)
        self.wanted = {e for t in self.targets for e in t.events}

    def scan(self) -> int:
        """Add the deliveries for what happened since the last scan; returns how many."""
        if not self.targets:
            return 0
        now = self.clock()
        mark = self.store.watermark(WATERMARK)
        # The first scan ever starts now: no flood of old news when notifications are new.
        after = now if mark is None else max(mark, now - MAX_CATCH_UP)
        found = self.events(after, now)
        added = self.store.add(self._deliveries(found), now)
        self.store.set_watermark(WATERMARK, now)
        if added:
            log.info("queued %d notification(s)", added)
        return added

    def events(self, after: datetime, until: datetime) -> list[Event]:
        """Everything the targets want to hear about between ``after`` and ``until`` (runs
        and audit entries from ``LOOKBACK`` earlier)."""
        found: list[Event] = []
        since = after - LOOKBACK
        if EventType.RUN_FINISHED in self.wanted:
            found += self._runs(since)
        if self.wanted & {EventType.EMERGENCY_OVERRIDE, EventType.MAINTENANCE_SKIPPED}:
            found += self._audit(since)
        if self.wanted & _WINDOW_EVENTS and after < until:
            found += self._windows(after, until)
        return found

    def _runs(self, since: datetime) -> list[Event]:
        query = (
            select(runs)
            .where(runs.c.finished_at >= since, runs.c.status.not_in(_NOT_FINISHED))
            .order_by(runs.c.finished_at, runs.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [events.run_finished(dict(row), self.fleet) for row in rows]

    def _audit(self, since: datetime) -> list[Event]:
        query = (
            select(audit_log)
            .where(audit_log.c.at >= since, audit_log.c.action.in_(_AUDITED))
            .order_by(audit_log.c.seq)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        out: list[Event] = []
        for row in rows:
            entry = entry_from_row(row)
            event = events.from_audit(entry, self.fleet)
            if event is not None:
                out.append(event)
        return out

    def _windows(self, after: datetime, until: datetime) -> list[Event]:
        # Occurrences overlapping [after, until + 1 s) hold every edge in (after, until].
        occurrences = self.gate.occurrences_between(after, until + timedelta(seconds=1))
        return events.window_edges(occurrences, after, until, self.fleet)

    def _deliveries(self, found: Sequence[Event]) -> list[NewDelivery]:
        out: list[NewDelivery] = []
        for event in found:
            for target in self.targets:
                if not events.matches(target, event):
                    continue
                out.append(
                    NewDelivery(
                        target=target.name,
                        event_key=event.key,
                        event_type=event.type.value,
                        member=event.member,
                        payload=event.payload(target.members),
                    )
                )
        return out
