"""Benchmark a /metrics scrape for 4 members (the lab) and 342 (every Dutch municipality).

Run: ``.venv/bin/python bench/metrics_scrape.py [--scrapes N] [--days D]``.

Each member runs 2 apps with 3 instances each. The store (SQLite, as a single node uses it)
holds what ``controlplane serve`` would have written with the default settings: D days
(default 30) of hourly probe counts for every instance, the last hour of raw samples at the
30 s probe interval, 20 finished runs per member (deploys, rollbacks, failures), a drift
check per member, and a few active runs holding locks.

Printed per size:

- *cold*: the first scrape of a fresh collector, which sums every closed hour (30 days and
  all time) and the closed 5-minute blocks of the last hour; ``serve`` does this in its
  ``metrics.prepare`` job at start and every minute, so scrapes rarely pay it;
- *warm*: the median of the following scrapes (the steady state: closed-hour sums cached,
  the open hours and the last hour of raw samples read from the store each time);
- *size*: bytes and series of the exposition;
- *client alone*: prometheus-client exposing the very same metric families, prebuilt (no
  store, no fleet): the floor any exporter of that many series pays; and the ratio of the
  warm scrape to it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from sqlalchemy import Engine, insert

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import (
    Capacity,
    ConnectionKind,
    Fleet,
    Host,
    Instance,
    Member,
    Stack,
    StackApp,
)
from controlplane.metrics import ControlPlaneCollector, build_registry
from controlplane.store.db import make_engine, migrate
from controlplane.store.schema import locks, probe_hourly, run_hosts, runs
from controlplane.uptime.probes import ProbeSample
from controlplane.uptime.store import ProbeStore

ROOT = Path(__file__).resolve().parent.parent
SIZES = (4, 342)
INTERVAL = timedelta(seconds=30)
HOSTS_PER_RACK = 64


def synthetic_fleet(members: int) -> Fleet:
    """``members`` members with both catalogue apps, 3 instances each, on enough hosts."""
    lab = load_fleet(ROOT / "controlplane" / "inventories" / "lab")
    n_hosts = max(4, members * 6 // 40 + 1)  # about 40 instances per host
    hosts = tuple(
        Host(
            name=f"host-{h:03d}",
            address=f"10.{20 + h // 250}.{h % 250}.{1 + h // 62500}",
            capacity=Capacity(vcpu=64, ram_gib=256, disk_gib=4000),  # type: ignore[arg-type]
            connection=ConnectionKind.SSH,
            known_hosts_file="/etc/ssh/ssh_known_hosts",
        )
        for h in range(n_hosts)
    )
    slugs = [m.slug for m in lab.members] + [f"gemeente-{i:03d}" for i in range(4, members)]
    stacks = []
    for i, slug in enumerate(slugs[:members]):
        apps = []
        for a, app in enumerate(lab.apps):
            first = (i * 6 + a * 3) % n_hosts
            apps.append(
                StackApp(
                    app=app.slug,
                    version=app.latest_good.version,
                    instances=tuple(
                        Instance(host=hosts[(first + k) % n_hosts].name, port=10000 + 2 * i + a)
                        for k in range(3)
                    ),
                )
            )
        stacks.append(Stack(member=slug, apps=tuple(apps)))
    member_records = tuple(
        lab.members[i] if i < len(lab.members) else Member(slug=s, name=f"Gemeente {i}", slo=0.995)
        for i, s in enumerate(slugs[:members])
    )
    return Fleet(
        name=f"bench-{members}",
        members=member_records,
        hosts=hosts,
        apps=lab.apps,
        stacks=tuple(stacks),
    )


def fill(engine: Engine, fleet: Fleet, now: datetime, days: int) -> None:
    instances = fleet.instances()
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    hours = days * 24
    with engine.begin() as conn:
        for h in range(hours, 0, -1):
            hour = this_hour - timedelta(hours=h)
            conn.execute(
                insert(probe_hourly),
                [
                    {
                        "member": i.member,
                        "app": i.app,
                        "host": i.host,
                        "port": i.port,
                        "hour": hour,
                        "total": 120,
                        "good": 120 - (n + h) % 3,
                        "in_window": 4 if (h + n) % 168 == 0 else 0,
                        "good_in_window": 2 if (h + n) % 168 == 0 else 0,
                    }
                    for n, i in enumerate(instances)
                ],
            )
    store = ProbeStore(engine)
    rounds = int(timedelta(hours=1) / INTERVAL)
    for r in range(rounds, 0, -1):
        at = now - r * INTERVAL
        store.record(
            [
                ProbeSample(
                    i.member, i.app, i.host, i.port, at, (n + r) % 50 != 0, False, 0.003, i.version
                )
                for n, i in enumerate(instances)
            ]
        )
    run_rows: list[dict[str, Any]] = []
    host_rows: list[dict[str, Any]] = []
    lock_rows: list[dict[str, Any]] = []
    kinds = ["deploy"] * 14 + ["rollback"] * 3 + ["deploy"] * 3
    statuses = ["successful"] * 16 + ["failed"] * 3 + ["timed_out"]
    for m, member in enumerate(fleet.members):
        for k in range(20):
            started = now - timedelta(hours=6 * k + 1)
            run_rows.append(
                _run(member.slug, kinds[k], statuses[k], started, 20 + (m * 7 + k * 13) % 900)
            )
        drift = _run(member.slug, "drift", "successful", now - timedelta(hours=2), 30)
        run_rows.append(drift)
        host_rows += [
            {"run_id": drift["id"], "host": i.host, "outcome": "changed" if m % 9 == 0 else "ok"}
            for i in fleet.instances(member=member.slug)[:3]
        ]
        if m % 50 == 0:
            active = _run(member.slug, "deploy", "running", now - timedelta(minutes=2), None)
            run_rows.append(active)
            lock_rows.append(
                {
                    "key": f"stack:{member.slug}/uitkering",
                    "run_id": active["id"],
                    "mode": "exclusive",
                    "acquired_at": now,
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(runs), run_rows)
        conn.execute(insert(run_hosts), host_rows)
        conn.execute(insert(locks), lock_rows)


def _run(
    member: str, kind: str, status: str, started: datetime, seconds: float | None
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "kind": kind,
        "status": status,
        "playbook": f"{kind}.yml",
        "started_by": "bench",
        "reason": "",
        "member": member,
        "app": "uitkering",
        "version": "1.1.0",
        "hosts": [],
        "options": {},
        "tuning": {},
        "created_at": started,
        "started_at": started,
        "finished_at": None if seconds is None else started + timedelta(seconds=seconds),
        "cancel_requested": False,
    }


class Prebuilt:
    """A collector that hands back metric families built beforehand: exposition cost only."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def bench(members: int, scrapes: int, days: int, tmp: Path) -> dict[str, Any]:
    fleet = synthetic_fleet(members)
    engine = make_engine(f"sqlite:///{tmp / f'bench-{members}.db'}")
    migrate(engine)
    now = datetime.now(UTC)
    fill_s, _ = timed(lambda: fill(engine, fleet, now, days))
    collector = ControlPlaneCollector(fleet, engine)
    registry = build_registry(collector, process_metrics=False)
    cold, body = timed(lambda: generate_latest(registry))
    warm = [timed(lambda: generate_latest(registry))[0] for _ in range(scrapes)]

    families = list(collector.collect())
    series = sum(len(f.samples) for f in families)
    plain = CollectorRegistry()
    plain.register(Prebuilt(families))
    alone = [timed(lambda: generate_latest(plain))[0] for _ in range(scrapes)]
    engine.dispose()
    return {
        "members": members,
        "instances": len(fleet.instances()),
        "fill": fill_s,
        "cold": cold,
        "warm": statistics.median(warm),
        "bytes": len(body),
        "series": series,
        "alone": statistics.median(alone),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=7, help="warm scrapes to take the median of")
    parser.add_argument("--days", type=int, default=30, help="days of hourly probe counts")
    parser.add_argument("--members", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    print(
        f"/metrics scrape: 2 apps x 3 instances per member, {args.days} days of hourly probe "
        f"counts, 1 h of raw samples every 30 s, SQLite; median of {args.scrapes} warm scrapes"
    )
    header = (
        f"{'members':>7} {'instances':>9} {'series':>7} {'size':>9} {'cold':>9} "
        f"{'warm':>9} {'client alone':>12} {'warm/alone':>10}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for members in args.members:
            r = bench(members, args.scrapes, args.days, Path(tmp))
            print(
                f"{r['members']:>7} {r['instances']:>9} {r['series']:>7} "
                f"{r['bytes'] / 1024:>7.0f}kB {r['cold'] * 1000:>7.1f}ms "
                f"{r['warm'] * 1000:>7.1f}ms "
                f"{r['alone'] * 1000:>10.1f}ms {r['warm'] / r['alone']:>9.1f}x"
                f"   (store filled in {r['fill']:.0f}s)"
            )


if __name__ == "__main__":
    main()
