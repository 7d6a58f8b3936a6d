"""Allocation against hand-computed examples; metering across DST and mid-month growth."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from controlplane.costs.allocate import (
    ALLOCATED_COST,
    SHARE_RATIO,
    Allocation,
    allocate,
    cost_figures,
    round_cents,
    split,
)
from controlplane.costs.loader import load_costs
from controlplane.costs.metering import HostSize, merge_history, meter, meter_many
from controlplane.costs.model import (
    Contribution,
    CostBook,
    Interval,
    MarketPrices,
    Milli,
    PeriodCosts,
    Pool,
    ReferenceHost,
    UnitRates,
)
from controlplane.costs.periods import Period, PeriodRange
from controlplane.errors import FleetInvalid, InvalidInput
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Capacity
from tests.conftest import LAB

AMS = ZoneInfo("Europe/Amsterdam")
D = Decimal


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS).astimezone(UTC)  # type: ignore[misc]


def vcpu(amount: str) -> Milli:
    return Milli(int(D(amount) * 1000), 0, 0)


# -- the split -------------------------------------------------------------------------------


def test_three_way_split_of_100_gives_the_odd_cent_to_the_first_slug() -> None:
    parts = split(D("100.00"), {"rotterdam": 1, "amsterdam": 1, "den-haag": 1})
    assert parts == {"rotterdam": D("33.33"), "amsterdam": D("33.34"), "den-haag": D("33.33")}
    assert sum(parts.values()) == D("100.00")


def test_largest_remainder_beats_slug_order() -> None:
    # Quotas 0.333.. and 0.666.. cents: the larger remainder gets the only cent.
    assert split(D("0.01"), {"a": 1, "b": 2}) == {"a": D("0.00"), "b": D("0.01")}
    # 10.00 by 1:1:1:3 -> quotas 1.666.., 1.666.., 1.666.., 5.00: two odd cents to a and b.
    parts = split(D("10.00"), {"c": 1, "b": 1, "a": 1, "d": 3})
    assert parts == {"a": D("1.67"), "b": D("1.67"), "c": D("1.66"), "d": D("5.00")}


def test_split_refuses_what_cannot_be_split() -> None:
    with pytest.raises(InvalidInput, match="whole cents"):
        split(D("1.005"), {"a": 1})
    with pytest.raises(InvalidInput, match="every weight is zero"):
        split(D("1.00"), {"a": 0, "b": 0})
    with pytest.raises(InvalidInput, match="negative"):
        split(D("1.00"), {"a": 2, "b": -1})


def test_round_cents_rounds_halves_away_from_zero() -> None:
    assert round_cents(Fraction(1, 200)) == D("0.01")
    assert round_cents(Fraction(1, 300)) == D("0.00")
    assert round_cents(Fraction(-1, 200)) == D("-0.01")


# -- periods ---------------------------------------------------------------------------------


def test_month_hours_follow_daylight_saving_time() -> None:
    assert Period(2026, 10).hours(AMS) == 745  # clocks go back on 25 October
    assert Period(2026, 3).hours(AMS) == 743  # and forward on 29 March
    assert Period(2026, 6).hours(AMS) == 720
    assert Period(2026, 10).start(AMS) == datetime(2026, 9, 30, 22, tzinfo=UTC)
    assert Period(2026, 10).end(AMS) == datetime(2026, 10, 31, 23, tzinfo=UTC)


def test_period_parsing() -> None:
    assert Period.parse("2026-10") == Period(2026, 10)
    assert PeriodRange.parse("2026-Q4").months == (
        Period(2026, 10),
        Period(2026, 11),
        Period(2026, 12),
    )
    assert PeriodRange.parse("2026-07").months == (Period(2026, 7),)
    for bad in ("2026-13", "2026-00", "26-10", "2026-1", "2026-Q5", "", "october"):
        with pytest.raises(InvalidInput):
            PeriodRange.parse(bad)


# -- metering --------------------------------------------------------------------------------


def test_mid_month_growth_is_billed_for_the_hours_held() -> None:
    # 1 vCPU from before October; 3 vCPU from 15 October local midnight; DST ends on the 25th.
    history = [
        Interval("a", "uitkering", "h1", vcpu("1"), local(2026, 9, 1), local(2026, 10, 15)),
        Interval("a", "uitkering", "h1", vcpu("3"), local(2026, 10, 15)),
    ]
    oct_ = Period(2026, 10)
    usage = meter(history, oct_.start(AMS), oct_.end(AMS)).usage("a")
    before, after = 14 * 24, 17 * 24 + 1  # the extra hour of 25 October falls after growth
    assert usage.exact_hours()[0] == 1 * before + 3 * after == 1563
    assert usage.peak == vcpu("3")
    # Today's fleet (3 vCPU) for the whole month would have been 2235 vCPU-hours.
    assert usage.exact_hours()[0] < 3 * 745


def test_open_intervals_count_to_the_end_of_each_period() -> None:
    history = [Interval("a", "x", "h", vcpu("0.5"), local(2026, 2, 10, 12))]
    feb, mar = Period(2026, 2), Period(2026, 3)
    got = meter_many(history, [(p.start(AMS), p.end(AMS)) for p in (feb, mar)])
    feb_hours = 18 * 24 + 12  # from the 10th at noon
    assert got[0].usage("a").exact_hours()[0] == Fraction(feb_hours, 2)
    assert got[1].usage("a").exact_hours()[0] == Fraction(743, 2)
    assert got[0].usage("nobody").held == Milli(0, 0, 0)


def test_standalone_hosts_are_whole_hosts_per_hour() -> None:
    size = HostSize(Milli(4000, 16000, 100000), min_hosts=1)
    history = [
        Interval("a", "x", "h", Milli(5000, 1000, 0), local(2026, 6, 1), local(2026, 6, 16)),
        Interval("a", "x", "h", Milli(1000, 1000, 0), local(2026, 6, 16)),
    ]
    june = Period(2026, 6)
    usage = meter(history, june.start(AMS), june.end(AMS), size).usage("a")
    # 5 vCPU needs 2 hosts for 15 days, 1 vCPU one host for 15 days.
    assert usage.host_seconds == (2 * 15 + 1 * 15) * 24 * 3600


def test_declared_history_fills_the_time_before_the_stored_history() -> None:
    declared = [
        Interval("a", "x", "h", vcpu("1"), local(2026, 1, 1)),
        Interval("a", "x", "h2", vcpu("1"), local(2026, 1, 1), local(2026, 2, 1)),
        Interval("a", "y", "h", vcpu("1"), local(2026, 8, 1)),  # after the cut: dropped
    ]
    stored = [Interval("a", "x", "h", vcpu("2"), local(2026, 6, 15))]
    merged = merge_history(declared, stored, since=local(2026, 6, 15))
    assert merged == [
        Interval("a", "x", "h", vcpu("1"), local(2026, 1, 1), local(2026, 6, 15)),
        Interval("a", "x", "h2", vcpu("1"), local(2026, 1, 1), local(2026, 2, 1)),
        stored[0],
    ]
    assert merge_history(declared, []) == declared


# -- a whole allocation, by hand ----------------------------------------------------------------


SHARES = {"a": 50, "b": 30, "c": 20}


def small_book(**overrides: object) -> CostBook:
    """Three members on one 10-vCPU host; only vCPU counts (the other rates are zero)."""
    fields: dict[str, object] = {
        "members": ("a", "b", "c"),
        "pools": (
            Pool(
                slug="hardware",
                name="Hardware",
                key="reserved",
                idle="cooperative",
                standalone="hosts",
            ),
            Pool(slug="energy", name="Energy", key="reserved", standalone="hosts"),
            Pool(slug="facility", name="Facility", key="equal", standalone="full"),
            Pool(slug="operations", name="Ops", key="fixed", standalone="full", shares=SHARES),
            Pool(slug="licences", name="Licences", key="caseload", standalone="same"),
        ),
        "unit_rates": UnitRates(vcpu_hour=1, ram_gib_hour=0, disk_gib_hour=0),
        "reference_host": ReferenceHost(
            capacity=Capacity(vcpu=4, ram_gib=16, disk_gib=100), monthly_cost=D("300.00")
        ),
        "market": MarketPrices(
            vcpu_hour=D("0.10"), ram_gib_hour=0, disk_gib_hour=0, apps={"uitkering": 40}
        ),
        "periods": {
            Period(2026, 6): PeriodCosts(
                pools={
                    "hardware": D("720.00"),
                    "energy": D("252.00"),
                    "facility": D("100.00"),
                    "operations": D("1000.00"),
                    "licences": D("10.00"),
                },
                caseload={"a": 5000, "b": 3000, "c": 2000},
            )
        },
        "contributions": (),
    }
    fields.update(overrides)
    return CostBook(**fields)  # type: ignore[arg-type]


def small_history() -> list[Interval]:
    return [
        Interval("a", "uitkering", "h", vcpu("2"), local(2026, 5, 1)),
        Interval("b", "reintegratie", "h", vcpu("1"), local(2026, 5, 1)),
        Interval("c", "uitkering", "h", vcpu("1"), local(2026, 6, 16)),  # half of June
    ]


def small_allocation(book: CostBook | None = None) -> Allocation:
    book = book or small_book(
        contributions=(
            Contribution(member="b", description="Facility", monthly=D("50.00"), pool="facility"),
        )
    )
    june = Period(2026, 6)
    size = HostSize(Milli.of(book.reference_host.capacity), book.reference_host.min_hosts)
    metered = meter(small_history(), june.start(AMS), june.end(AMS), size)
    return allocate(book, june, metered, capacity=vcpu("10"))


def test_hand_computed_allocation() -> None:
    a = small_allocation()
    shares = {s.pool.slug: dict(s.shares) for s in a.pools}
    # vCPU-hours: a 2 x 720 = 1440, b 720, c 360 (from the 16th); capacity 10 x 720 = 7200.
    assert shares["hardware"] == {"a": D("144.00"), "b": D("72.00"), "c": D("36.00")}
    assert a.pools[0].cooperative == D("468.00")  # the 4680 idle vCPU-hours of 7200
    assert shares["energy"] == {"a": D("144.00"), "b": D("72.00"), "c": D("36.00")}  # idle shared
    assert shares["facility"] == {"a": D("33.34"), "b": D("33.33"), "c": D("33.33")}
    assert shares["operations"] == {"a": D("500.00"), "b": D("300.00"), "c": D("200.00")}
    assert shares["licences"] == {"a": D("5.00"), "b": D("3.00"), "c": D("2.00")}
    bills = {b.member: b for b in a.members}
    assert bills["a"].total == D("826.34")
    assert bills["b"].gross == D("480.33")
    assert bills["b"].credits == D("50.00")
    assert bills["b"].total == D("430.33")
    assert bills["c"].total == D("307.33")
    assert a.total == D("2082.00") == sum(b.gross for b in a.members) + a.cooperative
    # Standalone: hosts of 4 vCPU at 300/month, plus facility and operations in full, plus
    # the same licences share. a needs 1 host all month; c 1 host for half of it.
    assert bills["a"].standalone == D("300.00") + 100 + 1000 + 5 == D("1405.00")
    assert bills["c"].standalone == D("150.00") + 100 + 1000 + 2
    # Market: 0.10 per vCPU-hour plus 40.00 for each member running uitkering.
    assert bills["a"].market == D("144.00") + 40
    assert bills["b"].market == D("72.00")
    assert bills["c"].market == D("36.00") + 40
    assert bills["a"].saving_standalone == D("1405.00") - D("826.34")


def test_metric_figures_add_up_to_the_pools() -> None:
    a = small_allocation()
    figures = cost_figures(a)
    allocated = [f for f in figures if f.metric == ALLOCATED_COST]
    for s in a.pools:
        assert sum(f.value for f in allocated if f.pool == s.pool.slug) == s.amount
    hardware_idle = next(f for f in allocated if f.member == "cooperative")
    assert (hardware_idle.pool, hardware_idle.value) == ("hardware", D("468.00"))
    ratios = {f.member: f.value for f in figures if f.metric == SHARE_RATIO}
    assert set(ratios) == {"a", "b", "c", "cooperative"}
    assert ratios["a"] == (D("826.34") / D("2082.00")).quantize(D("0.000001"))
    assert abs(sum(ratios.values()) - 1) < D("0.00001")


def test_reserved_pool_with_nothing_reserved_is_bad_input() -> None:
    book = small_book()
    june = Period(2026, 6)
    with pytest.raises(InvalidInput, match="nothing was reserved"):
        allocate(book, june, meter([], june.start(AMS), june.end(AMS)), vcpu("10"))


def test_cost_book_cross_checks_name_the_field() -> None:
    with pytest.raises(FleetInvalid, match=r"pools\[operations\]\.shares: shares sum to 90%"):
        small_book(
            pools=(
                Pool(
                    slug="operations", name="Ops", key="fixed", shares={"a": 50, "b": 20, "c": 20}
                ),
            )
        )
    with pytest.raises(FleetInvalid, match=r"periods\.2026-06\.caseload\.c: required"):
        small_book(
            periods={
                Period(2026, 6): PeriodCosts(
                    pools={
                        "hardware": 1,
                        "energy": 1,
                        "facility": 1,
                        "operations": 1,
                        "licences": 1,
                    },
                    caseload={"a": 1, "b": 1},
                )
            }
        )
    with pytest.raises(FleetInvalid, match=r"pools\[energy\]\.idle"):
        small_book(pools=(Pool(slug="energy", name="E", key="equal", idle="cooperative"),))
    with pytest.raises(FleetInvalid, match=r"periods\.2026-07: no cost data"):
        small_book().costs(Period(2026, 7))


# -- the shipped lab data --------------------------------------------------------------------


def test_lab_october_bills_den_haag_for_the_replica_it_added_on_the_12th() -> None:
    from controlplane.costs.ledger import Ledger

    fleet = load_fleet(LAB)
    book = load_costs(LAB, fleet)
    assert set(book.periods) == {Period(2026, m) for m in range(1, 13)}
    ledger = Ledger(fleet, book, book.history)
    october = ledger.allocation(Period(2026, 10))
    hours = {b.member: b.usage.exact_hours()[0] for b in october.members}
    # uitkering 2 x 1 vCPU x 745 h; reintegratie 0.5 on lab-1 all month, and 0.5 on lab-2
    # from 12 October local midnight: 20 days and the DST hour = 481 h.
    assert hours["den-haag"] == 2 * 745 + Fraction(745, 2) + Fraction(481, 2) == 2103
    # Rotterdam's uitkering replicas doubled on 15 June: June holds both sizes.
    june = ledger.allocation(Period(2026, 6))
    rotterdam = june.member("rotterdam").usage.exact_hours()[0]
    assert rotterdam == 2 * (1 * 14 * 24 + 2 * 16 * 24) + 2 * Fraction(1, 2) * 720


def test_trend_leaves_out_months_before_any_reservation() -> None:
    from controlplane.costs.ledger import Ledger
    from controlplane.costs.metering import current_reservations

    fleet = load_fleet(LAB)
    book = load_costs(LAB, fleet)
    since = local(2026, 6, 1)
    stored = [
        Interval(member, app, host, amount, since)
        for (member, app, host), amount in current_reservations(fleet).items()
    ]
    ledger = Ledger(fleet, book, tuple(merge_history([], stored)))
    assert [p.month for p, _ in ledger.trend(Period(2026, 10))] == [6, 7, 8, 9, 10]
    with pytest.raises(InvalidInput, match="nothing was reserved in 2026-05"):
        ledger.allocation(Period(2026, 5))
