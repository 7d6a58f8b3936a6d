"""Run records, per-host results, events and locks, over any SQLAlchemy engine."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, delete, func, insert, select, text, update

from controlplane.clock import as_utc, utc_now
from controlplane.deploy.model import (
    ALLOWED_TRANSITIONS,
    HostOutcome,
    HostResult,
    Run,
    RunEvent,
    RunFailure,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.deploy.options import RunOptions
from controlplane.errors import InvalidInput, LeaseLost, RunNotFound
from controlplane.store.locks import Clock, LockTable
from controlplane.store.schema import locks, run_events, run_hosts, runs


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
        options=RunOptions.from_json(row["options"]),
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
        lease=int(row["lease"]),
        failure=RunFailure(row["failure"]) if row["failure"] else None,
    )


def db_now(conn: Connection) -> datetime:
    """The database's clock. Heartbeats and staleness are judged on it, so nodes whose own
    clocks disagree still agree on which run stopped beating."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(select(func.now())).scalar_one()
    else:
        # SQLite's clock is the host's; %f keeps milliseconds, which CURRENT_TIMESTAMP drops.
        raw = conn.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        value = datetime.fromisoformat(raw)
    return as_utc(value)


_LIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
# People copy short ids from `runs list`; fewer than this many characters match too much.
MIN_PREFIX = 4
# How many candidates an ambiguous prefix names.
SHOWN_CANDIDATES = 5
_HEX = re.compile(r"[0-9a-f]+")


class RunStore(LockTable):
    """Repository for runs and everything that hangs off them (locks: ``LockTable``)."""

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
                    options=spec.options.to_json(),
                    tuning={},
                    emergency_reason=spec.emergency_reason,
                    cancel_requested=False,
                    node=node,
                    created_at=self.clock(),
                    heartbeat_at=db_now(conn),
                    lease=0,
                )
            )
        return self.get(run_id)

    def get(self, run_id: str) -> Run:
        """The run with this id, or with this unique prefix of one (``resolve``)."""
        return self.resolve(run_id)

    def resolve(self, run_id: str, members: frozenset[str] | None = None) -> Run:
        """The run with this id, or the one run whose id starts with this prefix (at least
        ``MIN_PREFIX`` characters). ``members`` limits the search to those members' runs, so
        an ambiguous prefix never names a run the caller may not see.

        A prefix that is too short or matches several runs is ``InvalidInput`` (naming up to
        ``SHOWN_CANDIDATES`` of them); no match is ``RunNotFound``."""
        visible = runs.c.member.in_(sorted(members)) if members is not None else None
        with self.engine.connect() as conn:
            query = select(runs).where(runs.c.id == run_id)
            if visible is not None:
                query = query.where(visible)
            row = conn.execute(query).mappings().first()
            if row is not None:
                return _run(row)
            prefix = run_id.lower()
            if not _HEX.fullmatch(prefix):
                raise RunNotFound(f"no run {run_id!r}")
            if len(prefix) < MIN_PREFIX:
                raise InvalidInput(
                    f"run id {run_id!r}: give at least {MIN_PREFIX} characters of it"
                )
            query = (
                select(runs)
                .where(runs.c.id.startswith(prefix))
                .order_by(runs.c.created_at.desc(), runs.c.id)
                .limit(SHOWN_CANDIDATES + 1)
            )
            if visible is not None:
                query = query.where(visible)
            rows = conn.execute(query).mappings().all()
        if not rows:
            raise RunNotFound(f"no run {run_id!r}")
        if len(rows) > 1:
            named = ", ".join(r["id"][:12] for r in rows[:SHOWN_CANDIDATES])
            more = ", …" if len(rows) > SHOWN_CANDIDATES else ""
            raise InvalidInput(f"run id {run_id!r} is ambiguous: it matches {named}{more}")
        return _run(rows[0])

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
        fence: int | None = None,
        failure: RunFailure | None = None,
    ) -> Run:
        """Move a run to ``status``; refuses to move a finished run or to go backwards.

        With ``fence``, the move is made only while the run's lease is still that number;
        otherwise ``LeaseLost``, so an execution that was taken over never overwrites the
        record the node that took it over wrote."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(runs.c.status, runs.c.lease).where(runs.c.id == run_id).with_for_update()
            ).first()
            if row is None:
                raise RunNotFound(f"no run {run_id!r}")
            current, lease = row
            if fence is not None and lease != fence:
                raise LeaseLost(f"run {run_id} was taken over (lease {lease}, ours {fence})")
            allowed = ALLOWED_TRANSITIONS.get(RunStatus(current), frozenset())
            if status not in allowed:
                raise InvalidInput(f"run {run_id} cannot go from {current} to {status.value}")
            values: dict[str, Any] = {"status": status.value}
            now = self.clock()
            if status is RunStatus.RUNNING:
                values["started_at"] = now
                values["lease"] = lease + 1
                values["heartbeat_at"] = db_now(conn)
            if status.finished:
                values["finished_at"] = now
            changes: tuple[tuple[str, Any], ...] = (
                ("rc", rc),
                ("error", error),
                ("node", node),
                ("tuning", tuning),
                ("failure", None if failure is None else failure.value),
            )
            for key, value in changes:
                if value is not None:
                    values[key] = value
            conn.execute(
                update(runs).where(runs.c.id == run_id, runs.c.lease == lease).values(**values)
            )
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

    # -- leases: who may execute a run ----------------------------------------------------

    def start(self, run_id: str, node: str) -> Run:
        """Move a queued run to running for ``node`` with a new lease (fencing number); the
        returned run's ``lease`` is the number its executor must hold."""
        current = self.get(run_id).status
        if current is not RunStatus.QUEUED:
            raise InvalidInput(f"run {run_id} is {current.value}, not queued")
        return self.transition(run_id, RunStatus.RUNNING, node=node)

    def heartbeat(self, run_id: str, fence: int) -> bool:
        """Renew the lease ``fence`` on the database's clock; False when it is no longer held
        (the run was taken over or has finished)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.lease == fence, runs.c.status.in_(_LIVE))
                .values(heartbeat_at=db_now(conn))
            )
        return done.rowcount == 1

    def watch(self, run_id: str, fence: int) -> tuple[bool, bool]:
        """``(held, cancel_requested)``: whether the lease ``fence`` is still held, and
        whether someone asked to cancel the run."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs.c.lease, runs.c.status, runs.c.cancel_requested).where(
                    runs.c.id == run_id
                )
            ).first()
        if row is None:
            return False, False
        return row[0] == fence and row[1] in _LIVE, bool(row[2])

    def take_over(
        self, run_id: str, fence: int, error: str, stale_after: timedelta | None
    ) -> Run | None:
        """Interrupt a run whose owner is gone: raise its lease, mark it interrupted and
        free its locks, in one statement that also judges staleness.

        Only a run still at lease ``fence`` whose heartbeat is older than ``stale_after`` on
        the database's clock is taken (``None`` skips the age test: the owner is known dead).
        Of several nodes trying at once exactly one wins; the others get ``None``."""
        with self.engine.begin() as conn:
            query = update(runs).where(
                runs.c.id == run_id, runs.c.lease == fence, runs.c.status.in_(_LIVE)
            )
            if stale_after is not None:
                beat = func.coalesce(runs.c.heartbeat_at, runs.c.started_at, runs.c.created_at)
                query = query.where(beat < db_now(conn) - stale_after)
            done = conn.execute(
                query.values(
                    lease=runs.c.lease + 1,
                    status=RunStatus.INTERRUPTED.value,
                    finished_at=self.clock(),
                    error=error,
                )
            )
            if done.rowcount != 1:
                return None
            conn.execute(delete(locks).where(locks.c.run_id == run_id))
        return self.get(run_id)

    def ever_released(self, member: str, app: str) -> bool:
        """Whether any release of ``member``/``app`` was ever recorded: a successful deploy
        or rollback that was not a plan, or a host result saying which release is live."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(runs.c.id, runs.c.kind, runs.c.status, runs.c.options).where(
                    runs.c.member == member, runs.c.app == app
                )
            ).all()
            real = [r for r in rows if not RunOptions.from_json(r.options).check]
            if any(
                r.status == RunStatus.SUCCESSFUL.value
                and r.kind in (RunKind.DEPLOY.value, RunKind.ROLLBACK.value)
                for r in real
            ):
                return True
            if not real:
                return False
            found = conn.execute(
                select(func.count())
                .select_from(run_hosts)
                .where(
                    run_hosts.c.run_id.in_([r.id for r in real]),
                    run_hosts.c.release_after.is_not(None),
                )
            ).scalar()
        return bool(found)

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
            "reason": result.reason,
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
                    reason=r["reason"],
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
