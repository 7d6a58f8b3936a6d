"""The stack history: which member's app reserved what on which host, and when.

A repository over any SQLAlchemy engine (SQLite or PostgreSQL). Each row is one interval
for one (member, app, host); the open row (``valid_to`` NULL) is what is held now.
``record`` compares the fleet with the open rows at a moment ``at``: it closes the rows that
changed or went away and opens rows for the new sizes, and does nothing when nothing changed.
The deploy engine calls it after a successful deploy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, RowMapping, delete, func, insert, or_, select, text
from sqlalchemy import update as sql_update

from controlplane.clock import as_utc
from controlplane.costs.metering import current_reservations
from controlplane.costs.model import Interval, Milli
from controlplane.errors import InvalidInput
from controlplane.fleet.model import Fleet
from controlplane.store.schema import reservation_history as table

Key = tuple[str, str, str]  # member, app, host

# Any fixed 64-bit number: PostgreSQL's advisory lock serialising two recorders.
_PG_HISTORY_LOCK = 0x636F7374686973


@dataclass(frozen=True)
class Recorded:
    """What one ``record`` call changed."""

    opened: int
    closed: int

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.closed)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise InvalidInput("reservation history: the time must carry a time zone")
    return at.astimezone(UTC)


def _amount(row: RowMapping) -> Milli:
    return Milli(*(int(Decimal(row[c]) * 1000) for c in ("vcpu", "ram_gib", "disk_gib")))


def _interval(row: RowMapping) -> Interval:
    end = row["valid_to"]
    return Interval(
        member=row["member"],
        app=row["app"],
        host=row["host"],
        amount=_amount(row),
        start=as_utc(row["valid_from"]),
        end=None if end is None else as_utc(end),
    )


class ReservationHistory:
    """Repository of reservation intervals."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, fleet: Fleet, at: datetime) -> Recorded:
        """Record the fleet's reservations as of ``at``; idempotent when nothing changed."""
        return self.record_reservations(current_reservations(fleet), at)

    def record_reservations(self, current: Mapping[Key, Milli], at: datetime) -> Recorded:
        """Make the open rows equal ``current`` from ``at`` on."""
        at = _utc(at)
        with self.engine.begin() as conn:
            self._serialise(conn)
            rows = conn.execute(select(table).where(table.c.valid_to.is_(None))).mappings().all()
            held: dict[Key, list[RowMapping]] = defaultdict(list)
            for row in rows:
                held[(row["member"], row["app"], row["host"])].append(row)
            latest = max((as_utc(r["valid_from"]) for r in rows), default=None)
            if latest is not None and at < latest:
                raise InvalidInput(
                    f"reservation history: {at.isoformat()} is before the last recorded "
                    f"change at {latest.isoformat()}"
                )
            unchanged = {
                key
                for key, open_rows in held.items()
                if len(open_rows) == 1 and current.get(key) == _amount(open_rows[0])
            }
            closed = 0
            for key, open_rows in held.items():
                if key in unchanged:
                    continue
                for row in open_rows:
                    closed += 1
                    if as_utc(row["valid_from"]) == at:
                        # Opened at this very moment: it never held anything, drop it.
                        conn.execute(delete(table).where(table.c.id == row["id"]))
                    else:
                        conn.execute(
                            sql_update(table).where(table.c.id == row["id"]).values(valid_to=at)
                        )
            new = [
                {
                    "member": key[0],
                    "app": key[1],
                    "host": key[2],
                    "vcpu": Decimal(amount.vcpu).scaleb(-3),
                    "ram_gib": Decimal(amount.ram_gib).scaleb(-3),
                    "disk_gib": Decimal(amount.disk_gib).scaleb(-3),
                    "valid_from": at,
                    "valid_to": None,
                }
                for key, amount in sorted(current.items())
                if key not in unchanged
            ]
            if new:
                conn.execute(insert(table), new)
        return Recorded(opened=len(new), closed=closed)

    def _serialise(self, conn: Connection) -> None:
        # SQLite already takes the write lock at BEGIN (see store.db); PostgreSQL needs this
        # so two nodes recording at once cannot both open the same interval.
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_HISTORY_LOCK})

    def intervals(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[Interval]:
        """Every interval overlapping [start, end), oldest first."""
        query = select(table).order_by(table.c.valid_from, table.c.id)
        if end is not None:
            query = query.where(table.c.valid_from < _utc(end))
        if start is not None:
            query = query.where(or_(table.c.valid_to.is_(None), table.c.valid_to > _utc(start)))
        with self.engine.connect() as conn:
            return [_interval(row) for row in conn.execute(query).mappings()]

    def first_recorded(self) -> datetime | None:
        """When the stored history begins; None while it is empty."""
        with self.engine.connect() as conn:
            first = conn.execute(select(func.min(table.c.valid_from))).scalar()
        return None if first is None else as_utc(first)

    def is_empty(self) -> bool:
        return self.first_recorded() is None
