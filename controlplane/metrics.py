"""Prometheus metrics: one custom collector that reads the store at scrape time.

Every value comes from the shared store (or the fleet and window files), so several
control-plane nodes report the same truth. The collector yields fresh metric families on
each scrape; counters computed from the database are ``CounterMetricFamily`` and run
durations a ``HistogramMetricFamily`` with fixed buckets. Labels are bounded by the fleet:
member, app, host, port, period, kind, result; never run ids. Nothing here touches the
global registry: ``build_registry`` makes one and the caller keeps it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Engine, Select, case, extract, func, select
from sqlalchemy.exc import SQLAlchemyError

from controlplane.clock import as_utc, utc_now
from controlplane.deploy.model import HostOutcome, RunKind, RunStatus
from controlplane.fleet.model import Fleet, PlacedInstance
from controlplane.store.schema import locks, run_hosts, runs
from controlplane.uptime.metrics import UptimeMetrics
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.windows import WindowCalendar, no_windows

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
GIB = 1024**3
# Deploys take seconds (a restart) to an hour (a serial rollout over many hosts).
DURATION_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
FINISHED = tuple(s for s in RunStatus if s.finished)
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
# Always exported, zero or not, so increase() sees a member's first failure.
ALWAYS_KINDS = (RunKind.DEPLOY, RunKind.ROLLBACK)
# The duration histogram is about changes to members' stacks.
DURATION_KINDS = (RunKind.DEPLOY, RunKind.ROLLBACK)


def _ts(at: datetime) -> float:
    return at.timestamp()


def _duration(engine: Engine) -> ColumnElement[Any]:
    """Seconds from a run's start to its end, in the engine's SQL dialect."""
    if engine.dialect.name == "postgresql":
        return extract("epoch", runs.c.finished_at - runs.c.started_at)
    return (func.julianday(runs.c.finished_at) - func.julianday(runs.c.started_at)) * 86400.0


@dataclass(frozen=True)
class _RunQueries:
    """The four aggregate queries behind the run metrics, built once per collector."""

    by_status: Select[Any]
    durations: Select[Any]
    locks: Select[Any]
    drift: Select[Any]


def _run_queries(engine: Engine) -> _RunQueries:
    member = func.coalesce(runs.c.member, "")
    dur = _duration(engine)
    finished = [s.value for s in FINISHED]
    by_status = select(member, runs.c.kind, runs.c.status, func.count()).group_by(
        member, runs.c.kind, runs.c.status
    )
    durations = (
        select(
            member,
            runs.c.kind,
            func.count(),
            func.coalesce(func.sum(dur), 0),
            *[func.sum(case((dur <= b, 1), else_=0)) for b in DURATION_BUCKETS],
        )
        .where(
            runs.c.kind.in_([k.value for k in DURATION_KINDS]),
            runs.c.status.in_(finished),
            runs.c.started_at.is_not(None),
            runs.c.finished_at.is_not(None),
        )
        .group_by(member, runs.c.kind)
    )
    held = (
        select(member, locks.c.key, locks.c.mode, func.count())
        .join(runs, runs.c.id == locks.c.run_id)
        .group_by(member, locks.c.key, locks.c.mode)
    )
    # Each member's newest successful drift check, and how many hosts it found changed.
    newest_first = (runs.c.created_at.desc(), runs.c.id.desc())
    ranked = (
        select(
            member.label("member"),
            runs.c.id,
            runs.c.finished_at,
            func.row_number().over(partition_by=member, order_by=newest_first).label("rank"),
        )
        .where(runs.c.kind == RunKind.DRIFT.value, runs.c.status == RunStatus.SUCCESSFUL.value)
        .subquery()
    )
    drifted = func.sum(case((run_hosts.c.outcome == HostOutcome.CHANGED.value, 1), else_=0))
    drift = (
        select(ranked.c.member, ranked.c.finished_at, func.coalesce(drifted, 0))
        .select_from(ranked.outerjoin(run_hosts, run_hosts.c.run_id == ranked.c.id))
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.member, ranked.c.finished_at)
    )
    return _RunQueries(by_status, durations, held, drift)


class ControlPlaneCollector(Collector):
    """Reads fleet, probe, run, lock and window state at each scrape."""

    def __init__(
        self,
        fleet: Fleet,
        engine: Engine,
        *,
        calendar: WindowCalendar | None = None,
        probe_interval: float = 30.0,
        clock: Clock = utc_now,
        window_ttl: float = 30.0,
    ) -> None:
        self.fleet = fleet
        self.engine = engine
        self.calendar = calendar or no_windows()
        self.clock = clock
        self.uptime_metrics = UptimeMetrics(fleet, ProbeStore(engine), probe_interval)
        self._placed: dict[str, list[PlacedInstance]] = defaultdict(list)
        for inst in fleet.instances():
            self._placed[inst.member].append(inst)
        self.uptime = self.uptime_metrics.reader
        self._run_queries = _run_queries(engine)
        self.window_ttl = window_ttl
        self._window_cache: tuple[float, list[Metric]] | None = None
        self._window_lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        # Names depend on nothing registered elsewhere; skip the describe-time store read.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = self.clock()
        yield from self._fleet_metrics()
        yield from self._window_metrics(now)
        up = GaugeMetricFamily(
            "controlplane_store_up", "1 when the store answered this scrape, else 0."
        )
        try:
            families = [*self.uptime_metrics.families(now), *self._run_metrics()]
        except SQLAlchemyError as exc:
            log.warning("metrics: store unavailable: %s", str(exc).splitlines()[0])
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            yield from families
        yield up
        took = GaugeMetricFamily(
            "controlplane_collect_duration_seconds",
            "Time this scrape spent reading the store and the fleet.",
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    # -- fleet: members, hosts, reservations ----------------------------------------------

    def _fleet_metrics(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "controlplane_member_info",
            "A member of the cooperative (value 1).",
            labels=["member", "name"],
        )
        slo = GaugeMetricFamily(
            "controlplane_member_slo_ratio",
            "The member's availability objective.",
            labels=["member"],
        )
        for m in self.fleet.members:
            info.add_metric([m.slug, m.name], 1)
            slo.add_metric([m.slug], m.slo)
        yield info
        yield slo

        units: dict[str, tuple[str, float]] = {
            "vcpu": ("vcpus", 1),
            "ram_gib": ("memory_bytes", GIB),
            "disk_gib": ("disk_bytes", GIB),
        }
        capacity = {
            r: GaugeMetricFamily(
                f"controlplane_host_capacity_{name}",
                f"The host's capacity ({name.replace('_', ' ')}).",
                labels=["host"],
            )
            for r, (name, _) in units.items()
        }
        reserved = {
            r: GaugeMetricFamily(
                f"controlplane_host_reserved_{name}",
                f"Reserved on the host by the member's instances ({name.replace('_', ' ')}).",
                labels=["host", "member"],
            )
            for r, (name, _) in units.items()
        }
        by_host: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for inst in self.fleet.instances():
            for r, amount in inst.reserved.items():
                by_host[(inst.host, inst.member)][r] += float(amount)
        for host in self.fleet.hosts:
            for r, amount in host.capacity.items():
                capacity[r].add_metric([host.name], float(amount) * units[r][1])
        for (host_name, member), amounts in sorted(by_host.items()):
            for r, value in amounts.items():
                reserved[r].add_metric([host_name, member], value * units[r][1])
        yield from capacity.values()
        yield from reserved.values()

    # -- windows: from the calendar, cached briefly (they are config, not store state) ------

    def _window_metrics(self, now: datetime) -> list[Metric]:
        with self._window_lock:
            cached = self._window_cache
            if cached is not None and time.monotonic() - cached[0] < self.window_ttl:
                return cached[1]
            active = GaugeMetricFamily(
                "controlplane_maintenance_window_active",
                "1 while a maintenance window covers any of the member's instances.",
                labels=["member"],
            )
            nxt = GaugeMetricFamily(
                "controlplane_maintenance_window_next_start_timestamp_seconds",
                "When the member's next maintenance window starts (Unix time).",
                labels=["member"],
            )
            for m in self.fleet.members:
                covered = any(self.calendar.in_window(i, now) for i in self._placed[m.slug])
                active.add_metric([m.slug], int(covered))
                start = self.calendar.next_window_start(m.slug, now)
                if start is not None:
                    nxt.add_metric([m.slug], _ts(start))
            families: list[Metric] = [active, nxt]
            self._window_cache = (time.monotonic(), families)
            return families

    # -- runs, locks, drift ------------------------------------------------------------------

    def _run_metrics(self) -> list[Metric]:
        members = [m.slug for m in self.fleet.members]
        q = self._run_queries
        with self.engine.connect() as conn:
            status_rows = conn.execute(q.by_status).all()
            duration_rows = conn.execute(q.durations).all()
            lock_rows = conn.execute(q.locks).all()
            drift_rows = conn.execute(q.drift).all()

        total = CounterMetricFamily(
            "controlplane_runs",
            "Finished runs (deploy, rollback, patch, drift, playbook) by result.",
            labels=["member", "kind", "result"],
        )
        counted: dict[tuple[str, str, str], int] = {
            (m, k.value, s.value): 0 for m in members for k in ALWAYS_KINDS for s in FINISHED
        }
        active_counts: dict[tuple[str, str], int] = {
            (m, s.value): 0 for m in members for s in ACTIVE
        }
        for m, kind, status, n in status_rows:
            if RunStatus(status).finished:
                counted[(m, kind, status)] = counted.get((m, kind, status), 0) + int(n)
            else:
                active_counts[(m, status)] = active_counts.get((m, status), 0) + int(n)
        for key, n in sorted(counted.items()):
            total.add_metric(list(key), n)
        active = GaugeMetricFamily(
            "controlplane_runs_active", "Runs queued or running now.", labels=["member", "status"]
        )
        for (m, status), n in sorted(active_counts.items()):
            active.add_metric([m, status], n)

        hist = HistogramMetricFamily(
            "controlplane_run_duration_seconds",
            "How long finished deploy and rollback runs took, from start to end.",
            labels=["member", "kind"],
        )
        for m, kind, n, sum_seconds, *cumulative in sorted(
            duration_rows, key=lambda r: (r[0], r[1])
        ):
            buckets = [
                (str(float(b)), float(c or 0))
                for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)
            ]
            buckets.append(("+Inf", float(n)))
            hist.add_metric([m, kind], buckets, float(sum_seconds))

        held_counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for m, key, mode, n in lock_rows:
            scope = str(key).split(":", 1)[0]
            held_counts[(m, scope, mode)] += int(n)
        lock_family = GaugeMetricFamily(
            "controlplane_locks_held",
            "Locks held by runs, by the run's member, the lock's scope (stack, host) and mode.",
            labels=["member", "scope", "mode"],
        )
        for key3, n in sorted(held_counts.items()):
            lock_family.add_metric(list(key3), n)

        drift_hosts = GaugeMetricFamily(
            "controlplane_drift_hosts",
            "Hosts on which the member's last drift check found changes to make.",
            labels=["member"],
        )
        drift_at = GaugeMetricFamily(
            "controlplane_drift_check_timestamp_seconds",
            "When the member's last drift check finished (Unix time).",
            labels=["member"],
        )
        for m, at, n in sorted(drift_rows, key=lambda r: r[0]):
            drift_hosts.add_metric([m], int(n))
            drift_at.add_metric([m], _ts(as_utc(at)))
        return [total, active, hist, lock_family, drift_hosts, drift_at]


def build_registry(
    collector: Collector | None = None, *, process_metrics: bool = True
) -> CollectorRegistry:
    """A fresh registry with the control plane's collector and the usual process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    if collector is not None:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``."""
    return generate_latest(registry)
