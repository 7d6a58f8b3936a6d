"""Run records, per-host results, events and locks, over any SQLAlchemy engine."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from controlplane.clock import as_utc, utc_now
from controlplane.deploy.model import (
    ALLOWED_TRANSITIONS,
    HeldLock,
    HostOutcome,
    HostResult,
    LockMode,
    LockRequest,
    Run,
    RunEvent,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.errors import InvalidInput, LockHeld, RunNotFound
from controlplane.store.schema import locks, run_events, run_hosts, runs

Clock = Callable[[], datetime]

# Any fixed 64-bit number: PostgreSQL's advisory lock that serialises lock-table changes.
_PG_LOCK_TABLE_KEY = 0x636F6E74726F6C


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _run(row: RowMapping) -> Run:
    return Run(
        id=row["id"],
        kind=RunKind(row["kind"]),
        status=RunStatus(row["status"]),
        playbook=row["playbook"],
        started_by=row["started_by"],
        reason=row["reason"],
        member=row["member"],
        app=row["app"],
        version=row["version"],
        hosts=tuple(row["hosts"]),
        params=dict(row["params"]),
        created_at=_aware(row["created_at"]),  # type: ignore[arg-type]
        started_at=_aware(row["started_at"]),
        finished_at=_aware(row["finished_at"]),
        node=row["node"],
        rc=row["rc"],
        error=row["error"],
        tuning=dict(row["tuning"]),
        emergency_reason=row["emergency_reason"],
        cancel_requested=bool(row["cancel_requested"]),
        heartbeat_at=_aware(row["heartbeat_at"]),
    )


class RunStore:
    """Repository for runs and everything that hangs off them."""

    def __init__(self, engine: Engine, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock

    # -- runs --------------------------------------------------------------------------------

    def create(self, spec: RunSpec, node: str | None = None) -> Run:
        run_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                insert(runs).values(
                    id=run_id,
                    kind=spec.kind.value,
                    status=RunStatus.QUEUED.value,
                    playbook=spec.playbook,
                    started_by=spec.started_by,
                    reason=spec.reason,
                    member=spec.member,
                    app=spec.app,
                    version=spec.version,
                    hosts=list(spec.hosts),
                    params=spec.params,
                    tuning={},
                    emergency_reason=spec.emergency_reason,
                    cancel_requested=False,
                    node=node,
                    created_at=self.clock(),
                )
            )
        return self.get(run_id)

    def get(self, run_id: str) -> Run:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
            if row is None:
                # Accept an unambiguous prefix, as people copy short ids from `runs list`.
                if len(run_id) >= 6 and run_id.isalnum():
                    rows = (
                        conn.execute(select(runs).where(runs.c.id.startswith(run_id)).limit(2))
                        .mappings()
                        .all()
                    )
                    if len(rows) == 1:
                        return _run(rows[0])
                raise RunNotFound(f"no run {run_id!r}")
        return _run(row)

    def find(
        self,
        member: str | None = None,
        statuses: Iterable[RunStatus] | None = None,
        limit: int = 50,
    ) -> list[Run]:
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.id).limit(limit)
        if member is not None:
            query = query.where(runs.c.member == member)
        if statuses is not None:
            query = query.where(runs.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query).mappings()]

    def transition(
        self,
        run_id: str,
        status: RunStatus,
        *,
        rc: int | None = None,
        error: str | None = None,
        node: str | None = None,
        tuning: dict[str, Any] | None = None,
    ) -> Run:
        """Move a run to ``status``; refuses to move a finished run or to go backwards."""
        with self.engine.begin() as conn:
            current = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
            if current is None:
                raise RunNotFound(f"no run {run_id!r}")
            allowed = ALLOWED_TRANSITIONS.get(RunStatus(current), frozenset())
            if status not in allowed:
                raise InvalidInput(f"run {run_id} cannot go from {current} to {status.value}")
            values: dict[str, Any] = {"status": status.value}
            now = self.clock()
            if status is RunStatus.RUNNING:
                values["started_at"] = now
            if status.finished:
                values["finished_at"] = now
            for key, value in (("rc", rc), ("error", error), ("node", node), ("tuning", tuning)):
                if value is not None:
                    values[key] = value
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
            if status.finished:
                conn.execute(delete(locks).where(locks.c.run_id == run_id))
        return self.get(run_id)

    def discard(self, run_id: str) -> None:
        """Forget a run that never started (refused before it could take its locks)."""
        with self.engine.begin() as conn:
            status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
            if status != RunStatus.QUEUED.value:
                raise InvalidInput(f"run {run_id} is {status}; only queued runs can be discarded")
            conn.execute(delete(runs).where(runs.c.id == run_id))

    def request_cancel(self, run_id: str) -> Run:
        """Ask the process executing a run to cancel it; a queued run is canceled at once."""
        run = self.get(run_id)
        if run.status.finished:
            return run
        if run.status is RunStatus.QUEUED:
            return self.transition(run.id, RunStatus.CANCELED, error="canceled before it started")
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run.id).values(cancel_requested=True))
        return self.get(run.id)

    def cancel_requested(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(runs.c.cancel_requested).where(runs.c.id == run_id)
            ).scalar()
        return bool(value)

    def heartbeat(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(heartbeat_at=self.clock()))

    def set_tuning(self, run_id: str, tuning: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(tuning=tuning))

    # -- per-host results --------------------------------------------------------------------

    def record_host(self, result: HostResult) -> None:
        """Insert or replace one host's result for a run."""
        values = {
            "run_id": result.run_id,
            "host": result.host,
            "outcome": result.outcome.value,
            "ok": result.ok,
            "changed": result.changed,
            "failures": result.failures,
            "unreachable": result.unreachable,
            "skipped": result.skipped,
            "release_before": result.release_before,
            "release_after": result.release_after,
            "started_at": result.started_at,
            "finished_at": result.finished_at,
        }
        with self.engine.begin() as conn:
            key = (run_hosts.c.run_id == result.run_id) & (run_hosts.c.host == result.host)
            if conn.execute(select(func.count()).select_from(run_hosts).where(key)).scalar():
                conn.execute(update(run_hosts).where(key).values(**values))
            else:
                conn.execute(insert(run_hosts).values(**values))

    def host_results(self, run_id: str) -> list[HostResult]:
        query = select(run_hosts).where(run_hosts.c.run_id == run_id).order_by(run_hosts.c.host)
        with self.engine.connect() as conn:
            return [
                HostResult(
                    run_id=r["run_id"],
                    host=r["host"],
                    outcome=HostOutcome(r["outcome"]),
                    ok=r["ok"],
                    changed=r["changed"],
                    failures=r["failures"],
                    unreachable=r["unreachable"],
                    skipped=r["skipped"],
                    release_before=r["release_before"],
                    release_after=r["release_after"],
                    started_at=_aware(r["started_at"]),
                    finished_at=_aware(r["finished_at"]),
                )
                for r in conn.execute(query).mappings()
            ]

    # -- events ------------------------------------------------------------------------------

    def append_events(self, run_id: str, events: Sequence[RunEvent]) -> None:
        if not events:
            return
        with self.engine.begin() as conn:
            conn.execute(
                insert(run_events),
                [
                    {
                        "run_id": run_id,
                        "seq": e.seq,
                        "event": e.event,
                        "host": e.host,
                        "task": e.task,
                        "created_at": e.created_at,
                        "data": e.data,
                    }
                    for e in events
                ],
            )

    def events(self, run_id: str, after_seq: int = -1, limit: int = 10_000) -> list[RunEvent]:
        query = (
            select(run_events)
            .where(run_events.c.run_id == run_id, run_events.c.seq > after_seq)
            .order_by(run_events.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                RunEvent(
                    run_id=r["run_id"],
                    seq=r["seq"],
                    event=r["event"],
                    created_at=_aware(r["created_at"]),  # type: ignore[arg-type]
                    host=r["host"],
                    task=r["task"],
                    data=dict(r["data"]),
                )
                for r in conn.execute(query).mappings()
            ]

    def last_seq(self, run_id: str) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.max(run_events.c.seq)).where(run_events.c.run_id == run_id)
            ).scalar()
        return None if value is None else int(value)

    # -- locks -------------------------------------------------------------------------------

    def acquire(self, run_id: str, requests: Sequence[LockRequest]) -> None:
        """Take every lock in ``requests`` for ``run_id``, or none and raise ``LockHeld``.

        Shared locks coexist with each other; an exclusive lock coexists with nothing.
        """
        with self.engine.begin() as conn:
            self._serialise(conn)
            wanted = {r.key: r for r in requests}
            rows = conn.execute(
                select(locks.c.key, locks.c.run_id, locks.c.mode)
                .where(locks.c.key.in_(list(wanted)), locks.c.run_id != run_id)
                .order_by(locks.c.acquired_at)
            ).all()
            for key, holder, mode in rows:
                if wanted[key].mode is LockMode.EXCLUSIVE or LockMode(mode) is LockMode.EXCLUSIVE:
                    raise LockHeld(key, holder)
            now = self.clock()
            try:
                conn.execute(
                    insert(locks),
                    [
                        {"key": r.key, "run_id": run_id, "mode": r.mode.value, "acquired_at": now}
                        for r in wanted.values()
                    ],
                )
            except IntegrityError:
                raise InvalidInput(f"run {run_id} already holds one of these locks") from None

    def release(self, run_id: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(locks).where(locks.c.run_id == run_id)).rowcount

    def held_locks(self) -> list[HeldLock]:
        with self.engine.connect() as conn:
            return [
                HeldLock(r.key, r.run_id, LockMode(r.mode), _aware(r.acquired_at))  # type: ignore[arg-type]
                for r in conn.execute(select(locks).order_by(locks.c.key, locks.c.run_id))
            ]

    def _serialise(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_TABLE_KEY)))
