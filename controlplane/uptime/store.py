"""Probe samples and their hourly counts, over any SQLAlchemy engine (SQLite or PostgreSQL).

Every sample is counted into its instance's hourly row in the same transaction that stores
it, so ``probe_hourly`` is complete at every moment: periods of a day and longer, and the
all-time counters behind ``/metrics``, read a few thousand hourly rows instead of millions
of samples. Retention (``expire``) then deletes raw samples older than the limit; what they
said lives on in the hourly counts, which are kept for good.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from controlplane.clock import as_utc
from controlplane.store.schema import probe_hourly, probe_samples
from controlplane.uptime.availability import Counts, floor_hour
from controlplane.uptime.probes import ProbeSample

Clock = Callable[[], datetime]
AppKey = tuple[str, str]  # (member, app)
InstanceKey = tuple[str, str, str, int]  # (member, app, host, port)

# Any fixed 64-bit number: the PostgreSQL advisory lock a probe round holds on one node.
_PG_PROBE_ROUND_KEY = 0x636F6E7470726F62

_HOURLY_KEY = ("member", "app", "host", "port", "hour")
_COUNT_COLUMNS = ("total", "good", "in_window", "good_in_window")


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("store times must be timezone-aware")
    return at.astimezone(UTC)


def _flag(column: ColumnElement[Any]) -> ColumnElement[int]:
    return case((column, 1), else_=0)


def _sum(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(expr), 0)


def _sqlite_unindexed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    # SQLite walks a whole (member, app, ...) index to get GROUP BY order for free rather
    # than range-scan the time index: grouping by an expression rules that plan out.
    zero = "0" if column.type.python_type is int else "''"
    op = "+" if zero == "0" else "||"
    return column.op(op)(literal_column(zero)).label(str(column.key))


class ProbeStore:
    """Repository for probe samples and hourly counts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    def _group(self, *columns: ColumnElement[Any]) -> list[ColumnElement[Any]]:
        """Grouping columns that leave the time index usable (see ``_sqlite_unindexed``)."""
        return [_sqlite_unindexed(c) if self._sqlite else c for c in columns]

    # -- writing -----------------------------------------------------------------------------

    def record(self, samples: Sequence[ProbeSample]) -> None:
        """Store samples and add them to their hourly counts, atomically."""
        if not samples:
            return
        hourly: dict[tuple[str, str, str, int, datetime], Counts] = defaultdict(Counts)
        rows = []
        for s in samples:
            at = _utc(s.at)
            rows.append(
                {
                    "member": s.member,
                    "app": s.app,
                    "host": s.host,
                    "port": s.port,
                    "at": at,
                    "healthy": s.healthy,
                    "in_window": s.in_window,
                    "latency_seconds": s.latency_seconds,
                    "version": s.version,
                    "error": s.error,
                }
            )
            key = (*s.key, floor_hour(at))
            hourly[key] = hourly[key] + Counts(
                1, int(s.healthy), int(s.in_window), int(s.healthy and s.in_window)
            )
        with self.engine.begin() as conn:
            conn.execute(insert(probe_samples), rows)
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(probe_hourly)
            upsert = stmt.on_conflict_do_update(
                index_elements=list(_HOURLY_KEY),
                set_={c: probe_hourly.c[c] + stmt.excluded[c] for c in _COUNT_COLUMNS},
            )
            # Sorted, so concurrent writers on PostgreSQL take row locks in the same order.
            conn.execute(
                upsert,
                [
                    {
                        **dict(zip(_HOURLY_KEY, key, strict=True)),
                        "total": c.total,
                        "good": c.good,
                        "in_window": c.in_window,
                        "good_in_window": c.good_in_window,
                    }
                    for key, c in sorted(hourly.items())
                ],
            )

    def expire(self, before: datetime) -> int:
        """Delete raw samples taken before ``before``; their hourly counts stay."""
        with self.engine.begin() as conn:
            return conn.execute(
                delete(probe_samples).where(probe_samples.c.at < _utc(before))
            ).rowcount

    @contextmanager
    def round_lock(self) -> Iterator[bool]:
        """Try to become the one node probing now; yields False when another node is.

        PostgreSQL: a session advisory lock held for the round. SQLite is one node's file,
        so the lock is always granted there.
        """
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        with self.engine.connect() as conn:
            try_lock = select(func.pg_try_advisory_lock(_PG_PROBE_ROUND_KEY))
            got = bool(conn.execute(try_lock).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(_PG_PROBE_ROUND_KEY)))
                    conn.commit()

    # -- reading -----------------------------------------------------------------------------

    def last_probe_at(self) -> datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(probe_samples.c.at))).scalar()
        return None if value is None else as_utc(value)

    def samples(
        self, since: datetime, member: str | None = None, app: str | None = None
    ) -> list[ProbeSample]:
        """Raw samples since ``since``, oldest first."""
        ps = probe_samples.c
        query = select(probe_samples).where(ps.at >= _utc(since)).order_by(ps.at, ps.id)
        if member is not None:
            query = query.where(ps.member == member)
        if app is not None:
            query = query.where(ps.app == app)
        with self.engine.connect() as conn:
            return [_sample(r) for r in conn.execute(query).mappings()]

    def latest(self, since: datetime) -> dict[InstanceKey, ProbeSample]:
        """Each instance's newest sample taken since ``since``."""
        ps = probe_samples.c
        keys = self._group(ps.member, ps.app, ps.host, ps.port)
        newest = (
            select(*keys, func.max(ps.at).label("at"))
            .where(ps.at >= _utc(since))
            .group_by(*keys)
            .subquery()
        )
        query = (
            select(probe_samples)
            .join(
                newest,
                and_(
                    ps.member == newest.c.member,
                    ps.app == newest.c.app,
                    ps.host == newest.c.host,
                    ps.port == newest.c.port,
                    ps.at == newest.c.at,
                ),
            )
            .order_by(ps.id)
        )
        with self.engine.connect() as conn:
            # Two nodes may have probed in the same instant: the later row wins.
            return {s.key: s for s in (_sample(r) for r in conn.execute(query).mappings())}

    def raw_counts(
        self, since: datetime, until: datetime | None = None, member: str | None = None
    ) -> dict[AppKey, Counts]:
        """Counts per (member, app) from the raw samples in [since, until)."""
        ps = probe_samples.c
        keys = self._group(ps.member, ps.app)
        query = (
            select(
                *keys,
                func.count(),
                _sum(_flag(ps.healthy)),
                _sum(_flag(ps.in_window)),
                _sum(_flag(and_(ps.healthy, ps.in_window))),
            )
            .where(ps.at >= _utc(since))
            .group_by(*keys)
        )
        if until is not None:
            query = query.where(ps.at < _utc(until))
        if member is not None:
            query = query.where(ps.member == member)
        with self.engine.connect() as conn:
            return {
                (row[0], row[1]): Counts(*(int(v) for v in row[2:])) for row in conn.execute(query)
            }

    def hourly_counts(
        self,
        starts: Sequence[datetime | None],
        end: datetime | None = None,
        member: str | None = None,
    ) -> dict[AppKey, list[Counts]]:
        """Counts per (member, app) from the hourly rows, one ``Counts`` per start.

        Each start selects the hours ``>= start`` (None: every hour) and ``< end`` (None: up
        to now), all in one pass over the table.
        """
        if not starts:
            return {}
        ph = probe_hourly.c
        columns: list[ColumnElement[Any]] = []
        for start in starts:
            for c in _COUNT_COLUMNS:
                if start is None:
                    columns.append(_sum(ph[c]))
                else:
                    columns.append(_sum(case((ph.hour >= _utc(start), ph[c]), else_=0)))
        keys = self._group(ph.member, ph.app)
        query = select(*keys, *columns).group_by(*keys)
        if all(s is not None for s in starts):
            query = query.where(ph.hour >= min(_utc(s) for s in starts if s is not None))
        if end is not None:
            query = query.where(ph.hour < _utc(end))
        if member is not None:
            query = query.where(ph.member == member)
        with self.engine.connect() as conn:
            out: dict[AppKey, list[Counts]] = {}
            for row in conn.execute(query):
                values = [int(v) for v in row[2:]]
                out[(row[0], row[1])] = [
                    Counts(*values[i : i + 4]) for i in range(0, len(values), 4)
                ]
            return out

    def hourly_series(
        self, since: datetime, until: datetime | None = None, member: str | None = None
    ) -> dict[AppKey, dict[datetime, Counts]]:
        """Counts per (member, app) and clock hour in [since, until), for charts."""
        ph = probe_hourly.c
        keys = self._group(ph.member, ph.app, ph.hour)
        query = (
            select(*keys, *(_sum(ph[c]) for c in _COUNT_COLUMNS))
            .where(ph.hour >= _utc(since))
            .group_by(*keys)
        )
        if until is not None:
            query = query.where(ph.hour < _utc(until))
        if member is not None:
            query = query.where(ph.member == member)
        out: dict[AppKey, dict[datetime, Counts]] = defaultdict(dict)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                hour = as_utc(row[2]) if isinstance(row[2], datetime) else _parse_hour(row[2])
                out[(row[0], row[1])][hour] = Counts(*(int(v) for v in row[3:]))
        return dict(out)

    def hourly_rows(self, member: str | None = None) -> list[dict[str, Any]]:
        """Every hourly row (tests and reports), oldest first."""
        query = select(probe_hourly).order_by(
            probe_hourly.c.hour, probe_hourly.c.member, probe_hourly.c.app, probe_hourly.c.host
        )
        if member is not None:
            query = query.where(probe_hourly.c.member == member)
        with self.engine.connect() as conn:
            return [{**dict(r), "hour": as_utc(r["hour"])} for r in conn.execute(query).mappings()]


def _parse_hour(value: object) -> datetime:
    # SQLite hands a grouped-by expression back as text (the ``_sqlite_unindexed`` concat).
    return as_utc(datetime.fromisoformat(str(value)))


def _sample(row: Any) -> ProbeSample:
    return ProbeSample(
        member=row["member"],
        app=row["app"],
        host=row["host"],
        port=row["port"],
        at=as_utc(row["at"]),
        healthy=bool(row["healthy"]),
        in_window=bool(row["in_window"]),
        latency_seconds=float(row["latency_seconds"]),
        version=row["version"],
        error=row["error"],
    )
