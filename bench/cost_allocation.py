"""Cost allocation for 4, 40 and 342 members over 12 months of hourly reservation history.

Each member's reservation changes every hour for a year (8,760 intervals per member), five
pools use all four keys, and all twelve months are metered and allocated exactly, as
`controlplane costs report` does for its trend. Prints the time per member count and how it
grows with the number of members, measured side by side in one run.

    .venv/bin/python bench/cost_allocation.py
"""

from __future__ import annotations

import itertools
import os
import random
import time
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from controlplane.costs.allocate import allocate
from controlplane.costs.metering import HostSize, meter_many
from controlplane.costs.model import (
    CostBook,
    Interval,
    MarketPrices,
    Milli,
    PeriodCosts,
    Pool,
    ReferenceHost,
    UnitRates,
)
from controlplane.costs.periods import Period
from controlplane.fleet.model import Capacity

ZONE = ZoneInfo("Europe/Amsterdam")
MONTHS = [Period(2026, m) for m in range(1, 13)]
SIZES = (4, 40, 342)


def fixed_shares(members: list[str]) -> dict[str, Decimal]:
    """Equal board shares with four decimals, the odd units to the first members."""
    units, n = 1_000_000, len(members)
    return {
        m: Decimal(units // n + (1 if i < units % n else 0)).scaleb(-4)
        for i, m in enumerate(members)
    }


def book_for(members: list[str], rng: random.Random) -> CostBook:
    pools = (
        Pool(
            slug="hardware", name="Hardware", key="reserved", idle="cooperative", standalone="hosts"
        ),
        Pool(slug="energy", name="Energy", key="reserved", standalone="hosts"),
        Pool(slug="licences", name="Licences", key="caseload", standalone="same"),
        Pool(
            slug="operations",
            name="Operations",
            key="fixed",
            shares=fixed_shares(members),
            standalone="full",
        ),
        Pool(slug="facility", name="Facility", key="equal", standalone="full"),
    )
    scale = len(members)
    periods = {
        p: PeriodCosts(
            pools={
                "hardware": Decimal(rng.randint(600_00, 700_00) * scale).scaleb(-2),
                "energy": Decimal(rng.randint(250_00, 400_00) * scale).scaleb(-2),
                "licences": Decimal(rng.randint(780_00, 830_00) * scale).scaleb(-2),
                "operations": Decimal(rng.randint(3100_00, 3300_00) * scale).scaleb(-2),
                "facility": Decimal(rng.randint(370_00, 380_00) * scale).scaleb(-2),
            },
            caseload={m: rng.randint(2_000, 40_000) for m in members},
        )
        for p in MONTHS
    }
    return CostBook(
        members=tuple(members),
        pools=pools,
        unit_rates=UnitRates(vcpu_hour="0.03", ram_gib_hour="0.004", disk_gib_hour="0.0002"),
        reference_host=ReferenceHost(
            capacity=Capacity(vcpu=8, ram_gib=32, disk_gib=200), monthly_cost="880.00", min_hosts=2
        ),
        market=MarketPrices(
            vcpu_hour="0.04",
            ram_gib_hour="0.005",
            disk_gib_hour="0.00014",
            apps={"uitkering": 6500},
        ),
        periods=periods,
    )


def hourly_history(members: list[str], rng: random.Random) -> list[Interval]:
    """One interval per member per hour of 2026, the size wandering between 1 and 12 vCPU."""
    start = MONTHS[0].start(ZONE)
    hours = int((MONTHS[-1].end(ZONE) - start).total_seconds()) // 3600
    edges = [start + timedelta(hours=h) for h in range(hours + 1)]
    out: list[Interval] = []
    for m in members:
        size = rng.randint(2, 8)
        for h in range(hours):
            size = min(12, max(1, size + rng.choice((-1, 0, 0, 0, 1))))
            amount = Milli(size * 500, size * 2000, size * 10_000)
            out.append(Interval(m, "uitkering", "host-1", amount, edges[h], edges[h + 1]))
    return out


def run(n: int) -> tuple[int, float, float, float]:
    """Meter and allocate all twelve months; wall seconds metering, allocating, and CPU."""
    rng = random.Random(n)
    members = [f"member-{i:03d}" for i in range(n)]
    book = book_for(members, rng)
    history = hourly_history(members, rng)
    size = HostSize(Milli.of(book.reference_host.capacity), book.reference_host.min_hosts)
    capacity = Milli(16_000 * n, 64_000 * n, 400_000 * n)  # two reference hosts per member
    bounds = [(p.start(ZONE), p.end(ZONE)) for p in MONTHS]
    cpu, t0 = time.process_time(), time.perf_counter()
    metered = meter_many(history, bounds, size)
    t1 = time.perf_counter()
    allocations = [allocate(book, p, m, capacity) for p, m in zip(MONTHS, metered, strict=True)]
    t2, cpu = time.perf_counter(), time.process_time() - cpu
    assert all(sum(b.gross for b in a.members) + a.cooperative == a.total for a in allocations)
    return len(history), t1 - t0, t2 - t1, cpu


def main() -> None:
    print(f"cost allocation: 12 months of hourly reservation history, {os.cpu_count()} CPUs")
    print("(best of 3 runs for 4 and 40 members, one run for 342)")
    header = ("members", "intervals", "metering s", "allocating s", "total s", "CPU s", "ms/member")
    print(" ".join(f"{h:>12}" for h in header))
    results: dict[int, tuple[float, float]] = {}
    for n in SIZES:
        runs = [run(n) for _ in range(3 if n < 100 else 1)]
        intervals, metering, allocating, cpu = min(runs, key=lambda r: r[1] + r[2])
        total = metering + allocating
        results[n] = (total, cpu)
        row = (
            n,
            f"{intervals:,}",
            f"{metering:.3f}",
            f"{allocating:.3f}",
            f"{total:.3f}",
            f"{cpu:.3f}",
            f"{1000 * total / n:.2f}",
        )
        print(" ".join(f"{c:>12}" for c in row))
    print()
    print("growth with the number of members (linear when the ratios match):")
    for small, large in itertools.pairwise(SIZES):
        wall = results[large][0] / results[small][0]
        cpu_ratio = results[large][1] / results[small][1]
        print(
            f"  {small:>3} -> {large:>3} members: members x{large / small:.2f}, "
            f"time x{wall:.2f}, CPU x{cpu_ratio:.2f}"
        )


if __name__ == "__main__":
    main()
