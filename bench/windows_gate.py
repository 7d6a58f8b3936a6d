"""Benchmark the windows gate: one decision, and a year of occurrences, for 10 .. 10,000 windows.

Run: ``.venv/bin/python bench/windows_gate.py``. Prints figures measured side by side in one
run, and how they grow with the number of windows (ratios to the previous size).

- *construct*: validating the windows and building the gate (RRULE parsing included).
- *first decision*: the first ``check_member`` on a fresh gate; it expands the windows of the
  lanes it consults from their start up to one chunk (35 days) past ``now``.
- *decision*: ``check_member`` once the expansions are cached (the steady state of a service).
- *year cold*: ``occurrences_between(now, now + 365 days)`` on a fresh gate.
- *year warm*: the same call again, from the cache.

Times are CPU seconds of this process (``time.process_time``). The windows are spread over
every scope of the lab fleet (hosts, members, members' apps, everything), 10% freezes, with
every member window-required, so a decision consults real lanes. A steady-state decision
costs in proportion to the windows open at that instant (it returns them all): about 0.1,
10 and 100 of them at the three sizes.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import DeployPolicy, Fleet, Member
from controlplane.windows.bounds import Limits
from controlplane.windows.gate import Gate
from controlplane.windows.rules import Scope, Window, WindowKind

ROOT = Path(__file__).resolve().parent.parent
SIZES = (10, 1_000, 10_000)
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
RULES = (
    "FREQ=WEEKLY;BYDAY={day}",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY={day}",
    "FREQ=DAILY",
    "FREQ=MONTHLY;BYDAY=1{day}",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-3,-2,-1",
)


def strict_lab() -> Fleet:
    fleet = load_fleet(
        Path(__file__).resolve().parent.parent / "controlplane" / "inventories" / "lab"
    )
    members = tuple(
        Member(slug=m.slug, name=m.name, slo=m.slo, deploy_policy=DeployPolicy.WINDOW_REQUIRED)
        for m in fleet.members
    )
    return dataclasses.replace(fleet, members=members)


def scopes(fleet: Fleet) -> list[Scope]:
    out = [Scope()]
    out += [Scope(host=h.name) for h in fleet.hosts]
    out += [Scope(member=m.slug) for m in fleet.members]
    out += [Scope(member=s.member, app=a.app) for s in fleet.stacks for a in s.apps]
    return out


def make_windows(n: int, fleet: Fleet, rng: random.Random) -> list[Window]:
    pool = scopes(fleet)
    out: list[Window] = []
    for i in range(n):
        freeze = rng.random() < 0.1
        rule = rng.choice(RULES[3:] if freeze else RULES[:4]).format(day=rng.choice(DAYS))
        hours = rng.choice((4, 12, 24)) if freeze else rng.choice((1, 2, 3, 4))
        scope = rng.choice(pool[1:]) if freeze else rng.choice(pool)
        out.append(
            Window(
                name=f"w{i}",
                kind=WindowKind.FREEZE if freeze else WindowKind.MAINTENANCE,
                scope=scope,
                rrule=rule,
                start=datetime(2026, 1, 1, rng.randrange(24), rng.choice((0, 15, 30, 45))),
                duration=timedelta(hours=hours),
                cutoff_minutes=0 if freeze else rng.choice((0, 15, 30)),
            )
        )
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    # CPU time of this (single-threaded) process: other load on a shared machine does not
    # inflate the figures or skew the ratios.
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def measure(n: int, fleet: Fleet) -> dict[str, float]:
    rng = random.Random(n)
    t_windows, windows = timed(lambda: make_windows(n, fleet, rng))
    t_gate, gate = timed(lambda: Gate(fleet, windows))
    members = [m.slug for m in fleet.members]
    apps: list[str | None] = [None, "uitkering", "reintegratie"]
    first, _ = timed(lambda: gate.check_member("amsterdam", None, NOW))
    # Steady state: warm the week's lanes, then time decisions at random instants in it.
    asks = [
        (rng.choice(members), rng.choice(apps), NOW + timedelta(seconds=rng.randrange(7 * 86400)))
        for _ in range(400)
    ]
    for member, app, at in asks:
        gate.check_member(member, app, at)
    samples = []
    for member, app, at in asks:
        t, _ = timed(lambda m=member, a=app, w=at: gate.check_member(m, a, w))  # type: ignore[misc]
        samples.append(t)
    year = (NOW, NOW + timedelta(days=365))
    # A query is capped at 10,000 occurrences for callers; the bench lifts the cap to time
    # a whole year of every window.
    fresh = Gate(fleet, windows, limits=Limits(max_occurrences=10**7))
    year_cold, occ = timed(lambda: fresh.occurrences_between(*year))
    year_warm, _ = timed(lambda: fresh.occurrences_between(*year))
    return {
        "construct": t_windows + t_gate,
        "first decision": first,
        "decision": statistics.median(samples),
        "decision p95": statistics.quantiles(samples, n=20)[-1],
        "year cold": year_cold,
        "year warm": year_warm,
        "occurrences": float(len(occ)),
    }


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:8.1f} ms"
    return f"{seconds:8.2f} s "


def main() -> None:
    fleet = strict_lab()
    results = {n: measure(n, fleet) for n in SIZES}
    keys = [k for k in results[SIZES[0]] if k != "occurrences"]
    print(f"windows gate benchmark (python {sys.version.split()[0]}, now = {NOW:%Y-%m-%d %H:%M}Z)")
    print(f"{'':16}" + "".join(f"{n:>14,} win" for n in SIZES))
    for key in keys:
        print(f"{key:16}" + "".join(f"{fmt(results[n][key]):>18}" for n in SIZES))
    print(
        f"{'occurrences/yr':16}" + "".join(f"{int(results[n]['occurrences']):>18,}" for n in SIZES)
    )
    print()
    print("growth (ratio to the previous size; the window count grows 100x, then 10x)")
    for key in keys:
        ratios = [results[b][key] / results[a][key] for a, b in itertools.pairwise(SIZES)]
        print(f"{key:16}" + f"{'':18}" + "".join(f"{r:>17.1f}x" for r in ratios))


if __name__ == "__main__":
    main()
