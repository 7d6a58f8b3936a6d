"""The deliveries outbox and the scanner's watermark, over any SQLAlchemy engine.

A delivery is ``pending`` until a 2xx answer makes it ``delivered`` or the backoff gives
up and makes it ``failed``. Sending is claimed first: the claim moves ``next_attempt_at``
forward only if it is still what the sender read, so two senders (two serve nodes) never
send the same attempt, and a sender that dies mid-send leaves a claim that simply expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, RowMapping, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from controlplane.clock import as_utc
from controlplane.errors import InvalidInput
from controlplane.store.schema import notify_deliveries as table
from controlplane.store.schema import notify_state

MAX_LIMIT = 1000
ERROR_CHARS = 300


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class NewDelivery:
    target: str
    event_key: str
    event_type: str
    member: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    id: str
    target: str
    event_key: str
    event_type: str
    member: str | None
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_http_status: int | None
    last_error: str | None


def _upsert(engine: Engine, target: Table) -> Any:
    """An INSERT that can say what to do on a conflict, in the engine's dialect."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(target)
    return sqlite.insert(target)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"],
        target=row["target"],
        event_key=row["event_key"],
        event_type=row["event_type"],
        member=row["member"],
        payload=dict(row["payload"]),
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        created_at=as_utc(row["created_at"]),
        next_attempt_at=_aware(row["next_attempt_at"]),
        last_attempt_at=_aware(row["last_attempt_at"]),
        delivered_at=_aware(row["delivered_at"]),
        last_http_status=row["last_http_status"],
        last_error=row["last_error"],
    )


class DeliveryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- the scanner's side --------------------------------------------------------------------

    def add(self, deliveries: Sequence[NewDelivery], now: datetime) -> int:
        """Insert the deliveries not yet known (by target and event key); returns how many
        were new. Due at once."""
        if not deliveries:
            return 0
        unique = {(d.target, d.event_key): d for d in deliveries}
        rows = [
            {
                "id": f"msg_{uuid.uuid4().hex}",
                "target": d.target,
                "event_key": d.event_key,
                "event_type": d.event_type,
                "member": d.member,
                "payload": d.payload,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for d in unique.values()
        ]
        stmt = _upsert(self.engine, table).on_conflict_do_nothing(
            index_elements=["target", "event_key"]
        )
        with self.engine.begin() as conn:
            query = select(table.c.target, table.c.event_key).where(
                table.c.event_key.in_({key for _, key in unique})
            )
            known = {(t, k) for t, k in conn.execute(query)}
            fresh = [r for r in rows if (r["target"], r["event_key"]) not in known]
            if not fresh:
                return 0
            # Another node may insert the same rows between the read and this write.
            # RETURNING counts what was really inserted, on both backends and in batches.
            return len(conn.execute(stmt.returning(table.c.id), fresh).all())

    def watermark(self, key: str) -> datetime | None:
        with self.engine.connect() as conn:
            at = conn.execute(select(notify_state.c.at).where(notify_state.c.key == key)).scalar()
        return None if at is None else as_utc(at)

    def set_watermark(self, key: str, at: datetime) -> None:
        """Move the watermark forward (never back: another node may be ahead)."""
        stmt = _upsert(self.engine, notify_state).values(key=key, at=at)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"at": stmt.excluded.at},
            where=notify_state.c.at < stmt.excluded.at,
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    # -- the sender's side ---------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 100) -> list[Delivery]:
        query = (
            select(table)
            .where(
                table.c.status == DeliveryStatus.PENDING.value,
                table.c.next_attempt_at <= now,
            )
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_delivery(r) for r in conn.execute(query).mappings()]

    def claim(self, delivery: Delivery, until: datetime) -> bool:
        """Take ``delivery`` for one attempt: True when no one else took it first."""
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(table)
                .where(
                    table.c.id == delivery.id,
                    table.c.status == DeliveryStatus.PENDING.value,
                    table.c.next_attempt_at == delivery.next_attempt_at,
                )
                .values(next_attempt_at=until)
            ).rowcount
        return bool(taken)

    def record(
        self,
        delivery_id: str,
        *,
        at: datetime,
        http_status: int | None,
        error: str | None,
        delivered: bool,
        next_attempt: datetime | None,
    ) -> None:
        """The outcome of one attempt: delivered, pending until ``next_attempt``, or failed
        (not delivered and no next attempt)."""
        if delivered:
            status = DeliveryStatus.DELIVERED
        elif next_attempt is not None:
            status = DeliveryStatus.PENDING
        else:
            status = DeliveryStatus.FAILED
        with self.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.id == delivery_id)
                .values(
                    status=status.value,
                    attempts=table.c.attempts + 1,
                    last_attempt_at=at,
                    delivered_at=at if delivered else None,
                    last_http_status=http_status,
                    last_error=None if error is None else error[:ERROR_CHARS],
                    next_attempt_at=next_attempt if status is DeliveryStatus.PENDING else None,
                )
            )

    def abandon(self, delivery_id: str, error: str) -> None:
        """Give up on a pending delivery without an attempt (its target is gone)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.id == delivery_id, table.c.status == DeliveryStatus.PENDING.value)
                .values(
                    status=DeliveryStatus.FAILED.value,
                    next_attempt_at=None,
                    last_error=error[:ERROR_CHARS],
                )
            )

    # -- reading -------------------------------------------------------------------------------

    def get(self, delivery_id: str) -> Delivery | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.id == delivery_id)).mappings().first()
        return None if row is None else _delivery(row)

    def list(
        self,
        *,
        statuses: Iterable[DeliveryStatus] | None = None,
        target: str | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """The newest ``limit`` deliveries, newest first."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit: must be between 1 and {MAX_LIMIT}")
        query = select(table).order_by(table.c.created_at.desc(), table.c.id).limit(limit)
        if statuses is not None:
            query = query.where(table.c.status.in_([s.value for s in statuses]))
        if target is not None:
            query = query.where(table.c.target == target)
        with self.engine.connect() as conn:
            return [_delivery(r) for r in conn.execute(query).mappings()]
